"""Every fenced code block of README.md runs as written (issue 21: the documented way must work).

Blocks are extracted from the README itself, so a new block is tested without editing this file. A
block may be preceded by one HTML comment that says how it is tested:

- ``<!-- readme-test: external (why) -->``: needs the network, data not in the repository, GPUs or
  hours; marked ``external`` and skipped unless ``ALIT_EVAL_README_EXTERNAL=1``.
- ``<!-- readme-test: run with OPTIONS (why) -->``: the documented long job, run with OPTIONS appended
  to each ``alit-eval`` line (tiny limits; the command itself is unchanged).

A bash block without a comment must consist of ``alit-eval`` lines only; each runs in a fresh temporary
folder (as ``python -m alit_eval``) and must exit 0. A python block runs as a script in a fresh
interpreter in a temporary folder. Everything runs offline.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"(?:<!-- readme-test: (?P<how>[^>]*?) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```", re.S)
EXTERNAL = os.environ.get("ALIT_EVAL_README_EXTERNAL") == "1"


def blocks() -> list[tuple[int, str, str, str]]:
    """``(line, language, how, body)`` of every fenced block of the README."""
    text = README.read_text(encoding="utf-8")
    return [(text[: m.start("body")].count("\n"), m["lang"], m["how"] or "", m["body"]) for m in BLOCK.finditer(text)]


def commands(body: str) -> list[str]:
    """The block's command lines, continuation lines (trailing backslash) joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", body)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def _env() -> dict[str, str]:
    repo = str(README.parent)
    path = os.environ.get("PYTHONPATH", "")
    env = {k: v for k, v in os.environ.items() if k != "ALIT_EVAL_FIGURE_FORMATS"}  # the documented default
    return {**env, "ALIT_EVAL_OFFLINE": "1", "PYTHONPATH": repo + (os.pathsep + path if path else "")}


def _cases() -> list:
    out = []
    for line, lang, how, body in blocks():
        marks = [pytest.mark.external,
                 pytest.mark.skipif(not EXTERNAL, reason=f"README line {line}: {how}")] if how.startswith("external") \
            else []
        out.append(pytest.param(lang, how, body, id=f"line{line}-{lang or 'text'}", marks=marks))
    return out


def test_every_block_is_found_and_says_how_it_is_tested():
    found = blocks()
    assert len(found) >= 8 and any(lang == "python" for _, lang, _, _ in found)
    for line, lang, how, body in found:
        assert lang in ("bash", "python"), f"README line {line}: a code block needs a language (bash or python)"
        assert not how or how.startswith(("external (", "run with ")), f"README line {line}: unknown {how!r}"


@pytest.mark.slow
@pytest.mark.parametrize("lang,how,body", _cases())
def test_readme_block_runs(lang, how, body, tmp_path):
    if lang == "python":
        script = tmp_path / "block.py"
        script.write_text(body)
        res = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                             timeout=900)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
        return
    extra = shlex.split(how[len("run with "):].split(" (")[0]) if how.startswith("run with ") else []
    for cmd in commands(body):
        argv = shlex.split(cmd)
        if how.startswith("external"):  # run only with ALIT_EVAL_README_EXTERNAL=1, as written
            res = subprocess.run(cmd, shell=True, cwd=tmp_path, env=_env(), capture_output=True, text=True)
        else:
            assert argv[0] == "alit-eval", f"an untested command in a README block: {cmd!r} (mark the block)"
            res = subprocess.run([sys.executable, "-m", "alit_eval", *argv[1:], *extra], cwd=tmp_path, env=_env(),
                                 capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, f"{cmd}\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}"


def _alit_eval_argv(cmd: str) -> list[str] | None:
    """The arguments after ``alit-eval`` (or ``-m alit_eval``) of a command line; None for other tools."""
    argv = shlex.split(cmd)
    for i, word in enumerate(argv):
        if word == "alit-eval" or (word == "alit_eval" and i and argv[i - 1] == "-m"):
            return argv[i + 1:]
    return None


def test_external_blocks_use_only_options_their_command_declares():
    # The blocks that cannot run here (network, data, GPUs) must still be commands that parse: a renamed
    # or misspelled flag in the README is caught without running anything.
    import typer

    from alit_eval.cli.app import GLOBAL_OPTIONS, app

    group = typer.main.get_command(app)
    checked = 0
    for line, _, how, body in blocks():
        for cmd in commands(body) if how.startswith("external") else []:
            argv = _alit_eval_argv(cmd)
            if argv is None:
                continue
            words = [w for w in argv if not w.startswith("-")]
            name = next((w for w in words if w in group.commands), None)
            assert name is not None, f"README line {line}: no alit-eval command in {cmd!r}"
            known = {o for p in group.get_command(None, name).params for o in (*p.opts, *p.secondary_opts)}
            flags = {w.split("=")[0] for w in argv if w.startswith("--")}
            unknown = sorted(flags - known - set(GLOBAL_OPTIONS) - {"--help"})
            assert not unknown, f"README line {line}: `alit-eval {name}` has no option {', '.join(unknown)}"
            checked += 1
    assert checked >= 6
