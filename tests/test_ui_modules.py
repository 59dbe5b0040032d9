"""The web UI's JavaScript modules, read as text (and imported once in a browser): views
do not import each other, importing a module starts nothing (no timer, no request, no
socket), and every blob URL made is revoked somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[1] / "arc_fabric_core" / "server" / "static"
MODULES = sorted(STATIC.glob("*.js"))
VIEWS = {p.name for p in MODULES if p.name.startswith("view-")}
# What starts work when called: a timer, a request, a connection.
STARTERS = ("setTimeout", "setInterval", "requestAnimationFrame", "requestIdleCallback", "fetch", "api", "connect")
CONSTRUCTED = ("WebSocket", "EventSource", "Worker")
# A module's top level may only declare and import; these words begin a declaration.
DECLARING = {"import", "export", "const", "let", "var", "function", "async", "class"}
# After these, a "/" begins a regular expression, not a division.
REGEX_AFTER = set("(,=:[!&|?{};+-*%<>~^") | {"", "return", "typeof", "case", "do", "else", "in", "of", "new", "void"}


def code_of(text: str) -> str:
    """``text`` with comments, strings, template text and regular expressions blanked
    (newlines kept, so lines and braces still line up); template expressions stay code."""
    out: list[str] = []
    i, n = 0, len(text)
    stack: list[str] = []  # "{" for a brace, "${" for a template expression inside a template
    last = ""  # the last significant token, to tell a regex from a division

    def blank(chunk: str) -> str:
        return "".join("\n" if c == "\n" else " " for c in chunk)

    def template(j: int) -> int:
        """Blank template text from ``j`` (after a backtick or a closing ``}``) to its end or to ``${``."""
        k = j
        while k < n:
            if text[k] == "\\":
                k += 2
            elif text[k] == "`":
                out.append(blank(text[j:k]) + "`")
                return k + 1
            elif text.startswith("${", k):
                out.append(blank(text[j:k]) + "${")
                stack.append("${")
                return k + 2
            else:
                k += 1
        raise AssertionError("unterminated template literal")

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(blank(text[i:j]))
            i = j
        elif text.startswith("/*", i):
            j = text.index("*/", i) + 2
            out.append(blank(text[i:j]))
            i = j
        elif c in "'\"":
            j = i + 1
            while text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(c + blank(text[i + 1 : j]) + c)
            i, last = j + 1, "string"
        elif c == "`":
            out.append("`")
            i, last = template(i + 1), "string"
        elif c == "/" and last in REGEX_AFTER:
            j, in_class = i + 1, False
            while in_class or text[j] != "/":
                if text[j] == "\\":
                    j += 1
                elif text[j] == "[":
                    in_class = True
                elif text[j] == "]":
                    in_class = False
                j += 1
            j += 1
            while j < n and text[j].isalpha():
                j += 1
            out.append(blank(text[i:j]))
            i, last = j, "regex"
        elif c == "{":
            stack.append("{")
            out.append(c)
            i, last = i + 1, c
        elif c == "}":
            if stack and stack.pop() == "${":
                out.append("}")
                i, last = template(i + 1), "string"
            else:
                out.append(c)
                i, last = i + 1, c
        elif c.isalnum() or c in "_$":
            j = i
            while j < n and (text[j].isalnum() or text[j] in "_$"):
                j += 1
            out.append(text[i:j])
            i, last = j, text[i:j]
        else:
            out.append(c)
            if not c.isspace():
                last = c
            i += 1
    return "".join(out)


def top_level(code: str) -> list[tuple[int, str]]:
    """The lines of ``code`` (as ``code_of`` gives it) that begin at the module's top level:
    outside every brace, parenthesis and bracket, with the line they start."""
    lines: list[tuple[int, str]] = []
    depth = 0
    for number, line in enumerate(code.split("\n"), 1):
        if depth == 0 and line.strip():
            lines.append((number, line))
        depth += sum(line.count(o) for o in "{([") - sum(line.count(c) for c in "})]")
    assert depth == 0, f"unbalanced brackets: {depth}"
    return lines


def outside_functions(code: str) -> str:
    """``code`` with every brace block blanked: what runs when the module is imported
    (bodies of functions and classes, and of blocks, are left out)."""
    out, depth = [], 0
    for c in code:
        if c == "}":
            depth -= 1
        out.append(c if depth == 0 or c == "\n" else " ")
        if c == "{":
            depth += 1
    return "".join(out)


def imports_of(text: str) -> set[str]:
    """The modules a module imports (static ``import``/``export ... from`` and ``import()``)."""
    found = set(re.findall(r"""\b(?:import|export)\b[^;'"`]*?\bfrom\s*["']([^"']+)["']""", text))
    found |= set(re.findall(r"""\bimport\s*["']([^"']+)["']""", text))
    found |= set(re.findall(r"""\bimport\s*\(\s*["']([^"']+)["']""", text))
    return {Path(f).name for f in found}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_the_reader_sees_the_code(path: Path) -> None:
    """The lexer keeps every line and balances every bracket (so what it says is about the code)."""
    text = path.read_text()
    code = code_of(text)
    assert code.count("\n") == text.count("\n")
    top_level(code)


def test_the_reader_tells_code_from_text() -> None:
    sample = (
        'const a = "setTimeout(x)"; // setInterval(y)\n'
        "const b = /fetch\\(/g.test(s) ? `api(${f(1)}) {` : 2 / 3;\n"
        "function f() {\n  setTimeout(g, 1);\n}\n"
        "/* connect() */\n"
    )
    code = code_of(sample)
    assert "setTimeout(x)" not in code and "setInterval" not in code and "fetch" not in code
    assert "connect" not in code and "f(1)" in code and "api(" not in code
    assert [line.split()[0] for _, line in top_level(code)] == ["const", "const", "function"]
    assert "setTimeout" not in outside_functions(code)


def test_no_view_imports_another_view() -> None:
    names = {p.name for p in MODULES}
    for path in MODULES:
        deps = imports_of(path.read_text())
        assert deps <= names, f"{path.name} imports what is not there: {sorted(deps - names)}"
        if path.name in VIEWS:
            others = sorted(deps & VIEWS)
            assert not others, f"{path.name} imports the view(s) {others}: move what they share to a shared module"
    # The shared modules are no views and import none.
    for path in MODULES:
        if path.name not in VIEWS and path.name != "app.js":
            assert not imports_of(path.read_text()) & VIEWS, f"{path.name} imports a view"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_importing_a_module_starts_nothing(path: Path) -> None:
    """Timers, requests and sockets start when a view is shown (or start() runs), never on import."""
    code = code_of(path.read_text())
    running = outside_functions(code)
    for word in STARTERS:
        for m in re.finditer(rf"(?<![\w$.])(?<!function ){word}\s*\(", running):
            line = running[: m.start()].count("\n") + 1
            raise AssertionError(f"{path.name}:{line}: {word}() runs when the module is imported")
    for word in CONSTRUCTED:
        assert not re.search(rf"\bnew\s+{word}\b", running), f"{path.name}: new {word} when the module is imported"
    for line, statement in top_level(code):
        first = re.match(r"\s*([\w$]+|\S)", statement)
        assert first is not None
        word = first.group(1)
        # A statement beginning with a name that declares nothing is a call or an assignment: it runs at import.
        if re.fullmatch(r"[\w$]+", word) and word not in DECLARING:
            raise AssertionError(f"{path.name}:{line}: a statement that runs at import: {statement.strip()}")


def test_every_blob_url_made_is_revoked() -> None:
    for path in MODULES:
        code = code_of(path.read_text())
        made = len(re.findall(r"\bURL\.createObjectURL\s*\(", code))
        if made:
            assert re.search(r"\bURL\.revokeObjectURL\s*\(", code), f"{path.name} makes blob URLs and revokes none"


def test_importing_every_module_in_a_browser_starts_nothing() -> None:
    """What the text says, checked where it runs: each module imported into a page that
    counts the timers, requests and sockets started."""
    pytest.importorskip("playwright.sync_api", reason="needs the playwright package")
    from playwright.sync_api import Route, sync_playwright

    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip(f"needs Chromium at {chromium}")
    origin = "http://ui.test"

    def serve(route: Route) -> None:
        name = route.request.url.removeprefix(f"{origin}/static/")
        path = STATIC / name
        if route.request.url == f"{origin}/":
            route.fulfill(status=200, content_type="text/html", body="<!doctype html><title>blank</title>")
        elif path.is_file():
            route.fulfill(status=200, content_type="text/javascript", body=path.read_text())
        else:
            route.fulfill(status=404, body="")

    counting = """
        window.started = [];
        for (const name of ["setTimeout", "setInterval", "requestAnimationFrame", "fetch"]) {
            const real = window[name].bind(window);
            window[name] = (...args) => { window.started.push(name); return real(...args); };
        }
        const RealSocket = window.WebSocket;
        window.WebSocket = function (...args) { window.started.push("WebSocket"); return new RealSocket(...args); };
    """
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(chromium), headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page()
            page.route(f"{origin}/**", serve)
            page.add_init_script(counting)
            page.goto(f"{origin}/")
            for path in MODULES:
                got = page.evaluate(
                    "async (name) => { window.started = []; await import(`./static/${name}`);"
                    " await new Promise((r) => queueMicrotask(r)); return window.started; }",
                    path.name,
                )
                assert got == [], f"importing {path.name} started {got}"
        finally:
            browser.close()
