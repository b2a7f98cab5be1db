"""Every checkpoint load in the package uses weights_only=True (no pickle code runs from a file)."""

from __future__ import annotations

import ast

import tomllib

from helpers.paths import ROOT


def _calls() -> list[tuple[str, ast.Call]]:
    out = []
    for path in sorted((ROOT / "src" / "blockprune").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                out.append((f"{path.relative_to(ROOT)}:{node.lineno}", node))
    return out


def _weights_only(call: ast.Call) -> bool:
    return any(
        k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True for k in call.keywords
    )


def test_every_torch_load_and_lightning_ckpt_path_passes_weights_only_true():
    loads = [
        (where, c)
        for where, c in _calls()
        if (
            isinstance(c.func, ast.Attribute)
            and c.func.attr == "load"
            and isinstance(c.func.value, ast.Name)
            and c.func.value.id == "torch"
        )
        or any(k.arg == "ckpt_path" for k in c.keywords)
    ]
    assert loads, "no checkpoint loads found: the scan is broken"
    unsafe = [where for where, c in loads if not _weights_only(c)]
    assert not unsafe, f"checkpoint loads without weights_only=True: {unsafe}"


def test_torch_floor_is_one_where_weights_only_is_safe():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_req = [r for r in deps if r.replace(" ", "").startswith("torch>")]
    assert torch_req and ">=2.6" in torch_req[0]  # CVE-2025-32434: weights_only=True unsafe before 2.6
