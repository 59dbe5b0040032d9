"""Sessions as state: fork, edit, lineage, delete, gc and the writer lock."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from arc_fabric_core.contract.errors import InputError, SessionError
from arc_fabric_core.contract.hookspecs import hookimpl
from arc_fabric_core.contract.models import LatentSpace
from arc_fabric_core.contract.params import GenerationParams
from arc_fabric_core.engine.edit_mask import EditMask, latent_mask
from arc_fabric_core.engine.facade import Engine, StepEvent
from arc_fabric_core.store.lineage import ancestors, render_tree
from arc_fabric_core.store.session import Operation

PARAMS = {"num_frames": 4, "height": 16, "width": 16, "steps": 8, "prompt": "sunrise"}


def steps_of(engine: Engine, session_id: str, **kwargs) -> list[int]:
    events: list[StepEvent] = []
    engine.resume(session_id, listeners=[events.append], **kwargs)
    return [e.step for e in events]


@pytest.fixture
def parent(toy_engine: Engine) -> str:
    session = toy_engine.create("toy", PARAMS)
    toy_engine.run(session)
    return session.id


def snapshot(engine: Engine) -> dict[str, bytes]:
    """Every file of the store, to prove that a refused operation touched nothing."""
    root = engine.store.root
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- fork


def test_fork_without_overrides_equals_its_parent_and_shares_its_checkpoints(toy_engine: Engine, parent: str) -> None:
    child = toy_engine.fork(parent, step=3)
    assert steps_of(toy_engine, child.id) == [4, 5, 6, 7, 8], "a fork runs only the remaining steps"
    assert torch.equal(toy_engine.final_latents(child.id), toy_engine.final_latents(parent))

    doc = toy_engine.store.load_doc(child.id)
    assert (doc.operation, doc.parent, doc.parent_step, doc.overrides) == (Operation.FORK, parent, 3, {})
    mine = toy_engine.store.session_dir(child.id) / "checkpoints"
    theirs = toy_engine.store.session_dir(parent) / "checkpoints"
    # The fork point is shared, not copied: the very same inode.
    assert (mine / "step_00003.safetensors").stat().st_ino == (theirs / "step_00003.safetensors").stat().st_ino
    assert sorted(p.name for p in mine.iterdir())[0] == "step_00003.safetensors"
    conditioning = toy_engine.store.session_dir(child.id) / "conditioning.safetensors"
    assert conditioning.stat().st_nlink == 2


def test_fork_copies_where_the_filesystem_has_no_hard_links(
    toy_engine: Engine, parent: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    def no_links(src: object, dst: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    child = toy_engine.fork(parent, step=5)
    shared = toy_engine.store.session_dir(child.id) / "checkpoints" / "step_00005.safetensors"
    assert shared.stat().st_nlink == 1 and not list(shared.parent.glob(".*tmp*"))
    toy_engine.run(child)
    assert torch.equal(toy_engine.final_latents(child.id), toy_engine.final_latents(parent))


def test_fork_with_a_new_prompt_changes_only_what_follows(toy_engine: Engine, parent: str) -> None:
    child = toy_engine.fork(parent, step=4, overrides={"prompt": "moonrise", "guidance": "1.5"})
    assert child.params.prompt == "moonrise" and child.params.guidance == 1.5
    assert toy_engine.store.load_doc(child.id).overrides == {"prompt": "moonrise", "guidance": 1.5}
    toy_engine.run(child)
    assert not torch.equal(toy_engine.final_latents(child.id), toy_engine.final_latents(parent))
    # Its own conditioning was encoded; the parent's is untouched.
    conditioning = toy_engine.store.session_dir(child.id) / "conditioning.safetensors"
    assert conditioning.stat().st_nlink == 1
    # The same fork as a fresh session run from the start agrees up to the fork point.
    direct = toy_engine.create("toy", {**PARAMS, "prompt": "moonrise", "guidance": 1.5})
    toy_engine.run(direct)
    assert not torch.equal(toy_engine.final_latents(child.id), toy_engine.final_latents(direct.id))


def test_fork_of_a_fork_and_resume_after_ctrl_c(toy_engine: Engine, toy_plugins, parent: str) -> None:
    child = toy_engine.fork(parent, step=2, overrides={"prompt": "dusk"})
    toy_engine.run(child)
    grandchild = toy_engine.fork(child.id, step=5)

    class CtrlC:
        @hookimpl(wrapper=True)
        def arc_denoise_step(self, step):
            if step.index == 6:
                raise KeyboardInterrupt
            return (yield)

    interrupter = CtrlC()
    toy_plugins.register(interrupter, name="ctrl-c")
    with pytest.raises(KeyboardInterrupt):
        toy_engine.run(grandchild)
    toy_plugins.unregister(interrupter)
    assert toy_engine.store.load_doc(grandchild.id).status == "paused"
    assert steps_of(toy_engine, grandchild.id) == [7, 8]
    assert torch.equal(toy_engine.final_latents(grandchild.id), toy_engine.final_latents(child.id))
    docs = {d.id: d for d in toy_engine.store.load_all()}
    assert ancestors(docs[grandchild.id], docs) == [parent, child.id]
    # Before its branch point a fork's state is its parent's, reached with the parent's prompt.
    with pytest.raises(InputError, match=f"fork {parent} at step 1 instead"):
        toy_engine.fork(child.id, step=1)


@pytest.mark.parametrize(
    ("step", "overrides", "field", "message"),
    [
        (8, {}, "step", "0..7"),
        (-1, {}, "step", "0..7"),
        (3, {"steps": 12}, "steps", "fixes the schedule"),
        (3, {"height": 32}, "height", "latent shape"),
        (3, {"colour": "red"}, "colour", "unknown parameter"),
        (3, {"guidance": "lots"}, "guidance", "number"),
    ],
)
def test_bad_fork_is_refused_before_anything_changes(
    toy_engine: Engine, parent: str, step: int, overrides: dict, field: str, message: str
) -> None:
    before = snapshot(toy_engine)
    with pytest.raises(InputError) as info:
        toy_engine.fork(parent, step=step, overrides=overrides)
    assert info.value.field == field and message in str(info.value)
    assert snapshot(toy_engine) == before
    assert toy_engine.cache.loads == 1  # only the parent's run loaded the model


def test_fork_needs_a_checkpoint_at_its_step(tmp_path: Path, toy_plugins) -> None:
    from arc_fabric_core.store.files import SessionStore

    engine = Engine(SessionStore(tmp_path), plugins=toy_plugins, device="cpu", checkpoint_every=4)
    session = engine.create("toy", PARAMS)
    engine.run(session)
    with pytest.raises(InputError, match=r"no checkpoint at step 3 \(it has: 0, 4, 8\)"):
        engine.fork(session.id, step=3)
    engine.fork(session.id, step=4)


def test_unknown_session_is_refused(toy_engine: Engine) -> None:
    with pytest.raises(SessionError, match="'nope' not found"):
        toy_engine.fork("nope", step=1)
    with pytest.raises(SessionError, match="'nope' not found"):
        toy_engine.edit("nope", step=1)


# ---------------------------------------------------------------- edit


def test_masked_edit_keeps_the_outside_and_changes_the_inside(toy_engine: Engine, parent: str) -> None:
    mask = EditMask(rect=(4, 0, 12, 8), frames=(1, 3))
    edit = toy_engine.edit(parent, step=4, overrides={"prompt": "a storm"}, mask=mask)
    assert steps_of(toy_engine, edit.id) == [5, 6, 7, 8], "an edit from k runs only N - k steps"

    before, after = toy_engine.final_latents(parent), toy_engine.final_latents(edit.id)
    inside = torch.zeros_like(before, dtype=torch.bool)
    inside[:, :, 1:3, 0:8, 4:12] = True
    assert torch.equal(after[~inside], before[~inside]), "outside the mask the source stays bit for bit"
    assert (after[inside] - before[inside]).abs().mean() > 0.05, "inside the mask the new prompt shows"

    doc = toy_engine.store.load_doc(edit.id)
    assert doc.operation == "edit" and doc.parent == parent and doc.edit is not None
    assert (doc.edit.start_step, doc.edit.source, doc.edit.rect, doc.edit.frames) == (4, "final", mask.rect, (1, 3))
    assert doc.edit.coverage == pytest.approx(2 / 4 * 8 / 16 * 8 / 16)


def test_edit_resumes_exactly_after_an_interruption(toy_engine: Engine, toy_plugins, parent: str) -> None:
    mask = EditMask(rect=(0, 0, 8, 16))
    whole = toy_engine.edit(parent, step=2, overrides={"prompt": "rain"}, mask=mask)
    toy_engine.run(whole)
    split = toy_engine.edit(parent, step=2, overrides={"prompt": "rain"}, mask=mask)
    toy_engine.run(split, until=5)
    assert steps_of(Engine(toy_engine.store, plugins=toy_plugins, device="cpu"), split.id) == [6, 7, 8]
    assert torch.equal(toy_engine.final_latents(split.id), toy_engine.final_latents(whole.id))


def test_a_fork_of_a_masked_edit_keeps_its_mask(toy_engine: Engine, parent: str) -> None:
    edit = toy_engine.edit(parent, step=2, overrides={"prompt": "snow"}, mask=EditMask(rect=(0, 0, 8, 16)))
    toy_engine.run(edit)
    same = toy_engine.run(toy_engine.fork(edit.id, step=4))
    assert torch.equal(toy_engine.final_latents(same), toy_engine.final_latents(edit.id))
    other = toy_engine.run(toy_engine.fork(edit.id, step=4, overrides={"prompt": "hail"}))
    before, after = toy_engine.final_latents(parent), toy_engine.final_latents(other)
    assert torch.equal(after[..., 8:], before[..., 8:]) and not torch.equal(after[..., :8], before[..., :8])


def test_strength_means_what_it_means_in_diffusers(toy_engine: Engine, parent: str) -> None:
    assert toy_engine.edit(parent, strength=0.25).step_index == 6  # the last quarter of 8 steps
    assert toy_engine.edit(parent, strength=1.0).step_index == 0
    with pytest.raises(InputError, match="re-runs no step"):
        toy_engine.edit(parent, strength=0.01)


def test_unmasked_edit_from_the_start_with_the_same_seed_is_a_regeneration(toy_engine: Engine, parent: str) -> None:
    # At step 0 the source is fully re-noised, with noise from the same seed as the parent's.
    edit = toy_engine.edit(parent, step=0)
    toy_engine.run(edit)
    assert torch.equal(toy_engine.final_latents(edit.id), toy_engine.final_latents(parent))


def test_edit_of_an_unfinished_session_uses_its_clean_estimate(toy_engine: Engine) -> None:
    partial = toy_engine.create("toy", {**PARAMS, "grain": 0.0})
    toy_engine.run(partial, until=3)
    edit = toy_engine.edit(partial.id, step=6, mask=EditMask(frames=(0, 2)))
    doc = toy_engine.store.load_doc(edit.id)
    assert doc.edit is not None and (doc.edit.source, doc.edit.source_step) == ("estimate", 3)
    toy_engine.run(edit)
    # The toy predicts its target exactly, so without grain the estimate already is the clean video.
    target = toy_engine.final_latents(edit.id)
    full = toy_engine.create("toy", {**PARAMS, "grain": 0.0})
    toy_engine.run(full)
    assert torch.allclose(target, toy_engine.final_latents(full.id), atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"step": 8}, "step"),
        ({"step": 2, "strength": 0.5}, "step"),
        ({"step": 2, "mask": EditMask(rect=(0, 0, 17, 8))}, "mask.rect"),
        ({"step": 2, "mask": EditMask(rect=(8, 0, 8, 8))}, "mask.rect"),
        ({"step": 2, "mask": EditMask(frames=(2, 9))}, "mask.frames"),
        ({"step": 2, "mask": EditMask(frames=(3, 3))}, "mask.frames"),
        ({"step": 2, "overrides": {"num_frames": 8}}, "num_frames"),
    ],
)
def test_bad_edit_is_refused_before_anything_changes(toy_engine: Engine, parent: str, kwargs: dict, field: str) -> None:
    before = snapshot(toy_engine)
    with pytest.raises(InputError) as info:
        toy_engine.edit(parent, **kwargs)
    assert info.value.field == field
    assert snapshot(toy_engine) == before


def test_mask_image(toy_engine: Engine, parent: str, tmp_path: Path) -> None:
    from PIL import Image

    image = Image.new("L", (16, 16), 0)
    image.paste(255, (0, 0, 4, 16))  # the left quarter
    image.save(tmp_path / "mask.png")
    edit = toy_engine.edit(parent, step=3, overrides={"prompt": "x"}, mask=EditMask(image=str(tmp_path / "mask.png")))
    toy_engine.run(edit)
    before, after = toy_engine.final_latents(parent), toy_engine.final_latents(edit.id)
    assert torch.equal(after[..., 4:], before[..., 4:]) and not torch.equal(after[..., :4], before[..., :4])

    Image.new("L", (16, 16), 0).save(tmp_path / "black.png")
    Image.new("L", (32, 16), 255).save(tmp_path / "wide.png")
    with pytest.raises(InputError, match="marks nothing"):
        toy_engine.edit(parent, step=3, mask=EditMask(image=str(tmp_path / "black.png")))
    with pytest.raises(InputError, match="32x16; the video is 16x16"):
        toy_engine.edit(parent, step=3, mask=EditMask(image=str(tmp_path / "wide.png")))
    with pytest.raises(InputError, match="not both"):
        toy_engine.edit(parent, step=3, mask=EditMask(image=str(tmp_path / "mask.png"), rect=(0, 0, 4, 4)))


def test_pixel_masks_map_onto_the_latent_grid() -> None:
    # Wan's VAE: 4x in time (causal: latent frame 0 is pixel frame 0), 8x in space.
    wan = LatentSpace(family="wan-vae", channels=16, temporal_compression=4, spatial_compression=8)
    params = GenerationParams(num_frames=33, height=64, width=96)
    m = latent_mask(EditMask(rect=(10, 8, 17, 16), frames=(1, 9)), params, wan)
    assert m.shape == (1, 1, 9, 8, 12)
    # Pixels 10..16 touch latent columns 1 and 2; rows 8..15 are latent row 1; frames 1..8 are latents 1 and 2.
    assert m[0, 0].nonzero().tolist() == [[f, 1, x] for f in (1, 2) for x in (1, 2)]
    assert [wan.latent_frame(f) for f in (0, 1, 4, 5, 8, 9, 32)] == [0, 1, 1, 2, 2, 3, 8]
    assert latent_mask(EditMask(), params, wan) is None


# ---------------------------------------------------------------- lineage, delete, gc


def test_lineage_tree(toy_engine: Engine, parent: str) -> None:
    fork = toy_engine.fork(parent, step=2, overrides={"prompt": "noon"})
    edit = toy_engine.edit(parent, step=5, mask=EditMask(rect=(0, 0, 8, 8)))
    toy_engine.fork(fork.id, step=2)
    lines = render_tree(toy_engine.store.load_all())
    assert len(lines) == 4
    assert lines[0].startswith(parent) and "new" in lines[0]
    assert lines[1].startswith(f"├─ {fork.id}") and "fork@2 prompt=noon" in lines[1]
    assert lines[2].startswith("│  └─ ") and "fork@2" in lines[2]
    assert lines[3].startswith(f"└─ {edit.id}") and "edit@5 mask 25%" in lines[3]


def test_deleting_a_parent_never_breaks_its_child(toy_engine: Engine, parent: str) -> None:
    child = toy_engine.fork(parent, step=4)
    expected = toy_engine.final_latents(parent)
    freed = toy_engine.delete(parent)
    assert not toy_engine.store.session_dir(parent).exists()
    assert freed > 0
    toy_engine.run(toy_engine.open(child.id))
    assert torch.equal(toy_engine.final_latents(child.id), expected)
    docs = toy_engine.store.load_all()
    assert render_tree(docs)[0].startswith(child.id), "an orphan becomes a root"


def test_gc_removes_only_what_no_session_names(toy_engine: Engine, parent: str) -> None:
    store = toy_engine.store
    folder = store.session_dir(parent)
    (folder / "checkpoints" / "step_00099.safetensors").write_bytes(b"left by a crash")
    debris = folder / ".latents.safetensors.tmp-1-2"
    debris.write_bytes(b"half a write")
    os.utime(debris, (0, 0))  # old: no writer is behind it
    fresh = folder / ".session.json.tmp-3-4"
    fresh.write_bytes(b"a write in flight")
    half_created = store.root / "20990101-000000-deadbeef"
    (half_created / "checkpoints").mkdir(parents=True)
    (half_created / "checkpoints" / "step_00000.safetensors").write_bytes(b"x" * 10)
    os.utime(half_created / "checkpoints" / "step_00000.safetensors", (0, 0))
    child = toy_engine.fork(parent, step=2)

    dry = store.gc(dry_run=True)
    assert sorted((g.file.split("/")[-1], g.reason) for g in dry) == [
        (".latents.safetensors.tmp-1-2", "temporary debris"),
        (half_created.name, "no session.json"),
        ("step_00099.safetensors", "unreferenced"),
    ]
    assert debris.exists()
    store.gc()
    assert not debris.exists() and not half_created.exists() and fresh.exists()
    assert not (folder / "checkpoints" / "step_00099.safetensors").exists()
    toy_engine.run(toy_engine.open(child.id))  # everything named is still there
    assert torch.equal(toy_engine.final_latents(child.id), toy_engine.final_latents(parent))


# ---------------------------------------------------------------- one writer


def test_a_second_writer_is_refused(toy_engine: Engine) -> None:
    session = toy_engine.create("toy", PARAMS)
    with toy_engine.store.lock(session.id):
        with pytest.raises(SessionError, match="being written by a job running in this process"):
            toy_engine.run(session)
        with pytest.raises(SessionError, match="being written"):
            toy_engine.delete(session.id)
    assert toy_engine.store.load_doc(session.id).status == "created", "the refused writer changed nothing"
    toy_engine.run(session)


HOLDER = textwrap.dedent(
    """
    import sys, time
    from arc_fabric_core.store.files import SessionStore
    with SessionStore(sys.argv[1]).lock(sys.argv[2]):
        print("locked", flush=True)
        time.sleep(60)
    """
)


def test_a_writer_in_another_process_is_refused_and_its_crash_frees_the_lock(toy_engine: Engine) -> None:
    session = toy_engine.create("toy", PARAMS)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(toy_engine.store.root), session.id], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(SessionError, match=f"pid {holder.pid}"):
            toy_engine.run(session)
    finally:
        holder.kill()
        holder.wait()
    toy_engine.run(session)  # the lock died with its holder
    assert toy_engine.store.load_doc(session.id).status == "completed"


def test_corrupt_final_latents_fall_back_to_the_last_checkpoint(toy_engine: Engine, parent: str) -> None:
    expected = toy_engine.final_latents(parent)
    path = toy_engine.store.session_dir(parent) / "latents.safetensors"
    path.write_bytes(path.read_bytes()[:-7])  # truncated
    assert torch.equal(toy_engine.final_latents(parent), expected)
