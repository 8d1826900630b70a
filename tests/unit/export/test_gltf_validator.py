"""The Khronos glTF validator (npm gltf-validator, run by node) opens our .glb files: no errors, no warnings.

Meshes of both representations (a NeRF's and 3D Gaussians' density through marching cubes), written by
``export.mesh.write_glb``. Skipped, with the reason, where node or the npm package is missing (`.ci/run`
installs it: ``npm ci --prefix tests/js``).
"""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

JS = Path(__file__).resolve().parents[2] / "js"


def _validate(path: Path) -> dict:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    if not (JS / "node_modules" / "gltf-validator").is_dir():
        pytest.skip("the npm package gltf-validator is not installed (npm ci --prefix tests/js)")
    done = subprocess.run(["node", str(JS / "validate_gltf.js"), str(path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("representation", ["nerf", "gaussians"])
def test_the_khronos_validator_finds_no_error_or_warning(tmp_path, representation):
    from dreamlift.config import config_to_dict
    from dreamlift.export.mesh import write_glb
    from dreamlift.export.outputs import scene_mesh
    from dreamlift.generate import GenerateConfig
    from dreamlift.scene import build_representation

    torch.manual_seed(0)
    cfg = GenerateConfig(prompt="a red mug", representation=representation).resolved()
    scene = build_representation(config_to_dict(cfg))
    level = 0.5 if representation == "gaussians" else 1.0  # the initial Gaussians overlap thinly
    mesh = scene_mesh(scene, 48, level)
    assert len(mesh.faces) > 100
    write_glb(mesh, tmp_path / "model.glb")
    report = _validate(tmp_path / "model.glb")
    issues = report["issues"]
    assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, issues["messages"][:5]
    info = report["info"]
    assert info["totalTriangleCount"] == len(mesh.faces) and info["totalVertexCount"] >= len(mesh.vertices)
    assert info["hasTextures"] and info["materialCount"] == 1  # the colours are in a base-colour texture


def test_the_validator_would_catch_a_broken_file(tmp_path):
    (tmp_path / "bad.glb").write_bytes(b"glTF" + b"\0" * 40)
    issues = _validate(tmp_path / "bad.glb")["issues"]
    assert issues["numErrors"] > 0
