"""Operations on sessions, one module each: generate, resume, fork, hand-off, edit,
extend, rewind, decode. Each holds its request schema, its check, how it creates the
session it runs and how that session's first run starts
(:class:`arc_fabric_core.contract.operations.OperationSpec`). They are registered
(``builtin.py``), never imported by the layers below: the engine reaches them through
the registry, as it reaches a plugin's."""
