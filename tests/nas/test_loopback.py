"""nas/loopback.js, preloaded into NNI's own Node.js, moves host-less listens and TensorBoard to 127.0.0.1."""

import json
import os
import stat
import subprocess
from pathlib import Path

import nni_node
import pytest

NAS = Path(__file__).resolve().parents[2] / "nas"
NODE = Path(nni_node.__path__[0]) / "node"


def run_node(script: str, tmp_path: Path, path_prefix: Path | None = None) -> str:
    env = {**os.environ, "NODE_OPTIONS": f"--require {json.dumps(str(NAS / 'loopback.js'))}"}
    if path_prefix is not None:
        env["PATH"] = f"{path_prefix}{os.pathsep}{env['PATH']}"
    done = subprocess.run([str(NODE), "-e", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("listen", ["listen(0, done)", "listen({port: 0}, done)", "listen(done)", "listen(0)"])
def test_a_server_without_a_host_binds_loopback(tmp_path, listen):
    script = (
        "const s = require('http').createServer();"
        "const done = () => { console.log(JSON.stringify(s.address())); s.close(); };"
        f"s.{listen}; if (!'{listen}'.includes('done')) s.on('listening', done);"
    )
    assert json.loads(run_node(script, tmp_path))["address"] == "127.0.0.1"


def test_an_explicit_host_is_kept(tmp_path):
    script = ("const s = require('net').createServer();"
              "s.listen(0, '::1', () => { console.log(s.address().address); s.close(); });")
    assert run_node(script, tmp_path).strip() == "::1"


def test_tensorboard_started_by_the_web_ui_serves_loopback(tmp_path):
    # what NNI's web UI runs (nniTensorboardManager.js): a shell command whose second word joins two flags
    fake = tmp_path / "bin" / "tensorboard"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    script = (
        "const p = require('child_process').spawn('tensorboard', ['--bind_all --logdir_spec=0-a:/x', '--port=6006'],"
        " {shell: true, stdio: 'inherit'}); p.on('exit', (c) => process.exit(c));"
    )
    args = run_node(script, tmp_path, fake.parent).split()
    assert args == ["--host=127.0.0.1", "--logdir_spec=0-a:/x", "--port=6006"]
