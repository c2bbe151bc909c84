"""The LightningCLI side of clear errors: config checks made before any model loads, and jsonargparse's errors
condensed to one line that names the key as the user typed it (and the config file it came from).

The checks run in the order a user can fix them: the `--config` files themselves (present, valid YAML), then the
data the config points at (a missing data root is reported before any model loads), then `--ckpt_path` (a complete
file that LightningCLI's weights-only read of its hyperparameters accepts), then the backbone and the settings that
depend on it (n within [1, L - 1]), then `--threads`.
"""

from __future__ import annotations

import importlib
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from lightning_ssd.errors import UsageError

_LIGHTNING_CKPT_NAMES = ("last", "best", "hpc", "registry")


def _config_files(argv: list[str]) -> Iterator[tuple[str, str]]:
    """(flag as typed, path) of every config file on the command line."""
    for i, arg in enumerate(argv):
        if arg in ("--config", "-c") and i + 1 < len(argv):
            yield arg, argv[i + 1]
        elif arg.startswith("--config="):
            yield "--config", arg.split("=", 1)[1]


def check_config_files(argv: list[str]) -> None:
    """Every `--config` file exists and is a YAML mapping; errors give the line and column."""
    for flag, value in _config_files(argv):
        path = Path(value)
        if not path.is_file():
            if "\n" in value or value.lstrip().startswith("{"):
                continue  # jsonargparse also takes the config itself as a string
            raise UsageError(f"{flag} {value}: no such file")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise UsageError(f"{flag} {value} is not valid YAML ({problem}{where}); fix the file") from None
        except UnicodeDecodeError:
            raise UsageError(f"{flag} {value} is not a text file; give a YAML config") from None
        if data is not None and not isinstance(data, dict):
            raise UsageError(f"{flag} {value} holds a {type(data).__name__}, not a mapping of config keys")


def _flatten(data: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _flatten(value, f"{prefix}{key}.")
    yield prefix[:-1], data


def _locate(key: str, value: str | None, argv: list[str]) -> str | None:
    """Where the user typed `key` (a full dotted key or only its last part): a flag, or a key in a config file."""

    def matches(name: str) -> bool:
        return name == key or name.endswith(f".{key}")

    for arg in reversed(argv):  # the command line overrides the config files
        if arg.startswith("--") and matches(arg[2:].split("=", 1)[0]):
            return arg.split("=", 1)[0]
    for flag, path in reversed(list(_config_files(argv))):
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError, UnicodeDecodeError):
            continue
        for name, found in _flatten(data):
            if matches(name) and (value is None or str(found) == value):
                return f"{name} in {flag} {path}"
    return None


_HEADER = re.compile(r"""Parser key "([^"]+)":|Problem with given class_path '([^']+)':""")
_EXPECTED = re.compile(r"Expected an? (.+?)(?:\. Got value: (.*?)(?:\. Got value: .*)?)?$")
_UNKNOWN = re.compile(r"(?:does not accept option|Option) '([^']+)'")
_GIVEN = re.compile(r"^\s*Given value: (.*)$")


def _type_name(text: str) -> str:
    text = text.strip()
    literal = re.fullmatch(r"typing\.Literal\[(.*)\]", text)
    if literal:
        return literal.group(1)
    cls = re.fullmatch(r"<class '(?:builtins\.)?([\w.]+)'>", text)
    name = cls.group(1) if cls else text
    return "null" if name == "NoneType" else name


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" -"))


def _innermost(lines: list[str]) -> tuple[list[str], str | None, list[str]]:
    """Follows the first branch of jsonargparse's nested "Parser key" / "Problem with given class_path" blocks: the
    key path, the class_path when the innermost block is a class_path problem, and that block's lines."""
    path: list[str] = []
    class_path, start, depth = None, 0, -1
    for i, line in enumerate(lines):
        if _indent(line) <= depth:
            break  # the innermost block has ended
        match = _HEADER.search(line)
        if match is None:
            continue
        key, cls, rest = match.group(1), match.group(2), line[match.end() :].strip()
        if "callable class" in line[: match.start()]:
            path.append("init_args")  # a class given as a callable (the imitation network): its arguments
        path.append(key if key is not None else "init_args")
        class_path = cls
        start, depth = i, _indent(line)
        if rest:
            return path, class_path, [rest]
    body = []
    for line in lines[start + 1 :]:
        if _indent(line) <= depth:
            break
        body.append(line.strip(" -"))
    return path, class_path, body


def describe_parser_error(message: str, argv: list[str], subcommand: str | None) -> str:
    """jsonargparse's (often 10-80 line) parse error as one line naming the key and, where it can be found, the
    config file that set it."""
    lines = [line for line in message.splitlines() if line.strip()]
    command = f"python -m lightning_ssd {subcommand or '<subcommand>'}"
    if message.startswith("unrecognized arguments"):
        return f"{lines[0]}; {command} --help lists the options"
    if message.startswith("the following arguments are required"):
        missing = lines[0].replace(f"{subcommand}.", "") if subcommand else lines[0]
        return f"{missing}; give a config with --config (experiments/ holds one per benchmark) or set them as flags"
    if not lines:
        return "the command line could not be parsed"
    path, class_path, body = _innermost(lines) if _HEADER.search(lines[0]) else ([], None, lines)
    unknown = next((m for m in map(_UNKNOWN.search, body) if m), None)
    if unknown:
        group = re.match(r"Group '([^']+)'", body[0])
        key = ".".join([*path, *([group.group(1)] if group else []), unknown.group(1)])
        hint = f"{command} --model.help {class_path}" if class_path else f"{command} --help"
        return f"{_locate(key, None, argv) or key}: no such option; check its spelling ({hint} lists the options)"
    if not path:
        return " ".join(" ".join(lines).split())
    given = next((m.group(1) for m in map(_GIVEN.match, body) if m), None)
    expected = [m for m in (_EXPECTED.search(x) for x in body) if m]
    if class_path is not None:
        key, given = ".".join([*path[:-1], "class_path"]), class_path
        detail = f"{class_path!r} cannot be used: {' '.join(body)}"
    elif expected:
        given = given if given is not None else expected[0].group(2)
        key = ".".join(path)
        detail = f"expected {' or '.join(_type_name(m.group(1)) for m in expected)}, got {given!r}"
    else:
        key, detail = ".".join(path), " ".join(body)
    return f"{_locate(key, given, argv) or key}: {detail}"


def _data_error(data: Any) -> str | None:
    """The first missing file of a file-backed data module, as a message naming the key that points at it."""
    from jsonargparse import Namespace

    from lightning_ssd.data.base import VLDataModule

    if not isinstance(data, Namespace) or not data.get("class_path"):
        return None
    module_name, _, class_name = data.class_path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name, None)
    # modules whose prepare_data writes their files (the synthetic benchmark) have nothing to check beforehand
    if not (isinstance(cls, type) and issubclass(cls, VLDataModule)):
        return None
    if cls.prepare_data is not VLDataModule.prepare_data:
        return None
    init = (data.get("init_args") or Namespace()).as_dict()
    try:
        module = cls(**init)
    except ValueError as err:
        if type(err) is not ValueError:
            raise
        raise UsageError(f"data ({data.class_path}): {err}") from err  # as the later, real instantiation would
    for split in module.splits:
        for path in module.required_files(split):
            if path.exists():
                continue
            key = next((k for k, v in init.items() if isinstance(v, str) and v
                        and (Path(v) == path or Path(v) in path.parents)), None)
            where = f"data.init_args.{key} {init[key]!r}" if key else f"data ({data.class_path})"
            return f"{where}: {path} does not exist ({module.dataset_name}). {module.how_to_get}"
    return None


def check_data(config: Any) -> None:
    """The data files a config points at exist (checked as the data module's `prepare_data` would)."""
    message = _data_error(config.get("data"))
    if message:
        from lightning_ssd.data.io import DatasetFileError

        raise DatasetFileError(message)


def check_ckpt_path(config: Any, argv: list[str]) -> None:
    """`--ckpt_path` names a complete checkpoint file that weights-only loading reads (or one of Lightning's names
    such as 'last')."""
    value = config.get("ckpt_path")
    if not value or value in _LIGHTNING_CKPT_NAMES or str(value).startswith("registry:"):
        return
    flag = "--ckpt_path" if any(a.startswith("--ckpt_path") for a in argv) else "ckpt_path"
    path = Path(value)
    if not path.is_file():
        raise UsageError(f"{flag} {value}: no such file; give a .ckpt written by fit (its "
                         "<trainer.default_root_dir>/checkpoints/last.ckpt), or 'last' to resume the latest")
    if not zipfile.is_zipfile(path):
        raise UsageError(f"{flag} {value} is not a checkpoint written by torch.save (no complete zip archive: the "
                         "file is truncated or of another kind); give a .ckpt written by fit")
    import torch

    from lightning_ssd.models.checkpoint import UnsafeCheckpointError

    # LightningCLI reads the checkpoint's hyperparameters with torch.load(weights_only=True) before any model loads
    try:
        needs = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except (RuntimeError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise UsageError(f"{flag} {value} is not a checkpoint written by torch.save, or it is damaged "
                         f"({type(err).__name__}); give a .ckpt written by fit") from None
    if needs:
        raise UnsafeCheckpointError(f"{flag} {value} needs more than weights to load (its pickle calls "
                                    f"{', '.join(needs)}), which could run code: it is refused; give a .ckpt "
                                    "written by fit")


def check_threads(config: Any, argv: list[str]) -> None:
    """`threads` is unset or >= 0, as `lightning_ssd.threads.set_threads` needs (checked before the seed is set)."""
    threads = config.get("threads")
    if threads is not None and threads < 0:
        where = _locate("threads", str(threads), argv) or "threads"
        raise UsageError(f"{where}: must be an integer >= 0 (0: leave torch's count alone), got {threads}")


def check_model(config: Any) -> None:
    """The backbone exists (read without loading weights) and the settings that depend on its depth fit it."""
    model = config.get("model")
    init = model.get("init_args") if model is not None and hasattr(model, "get") else None
    if init is None or not init.get("backbone"):
        return
    from lightning_ssd.backbones import check_backbone

    backbone = init.backbone
    num_layers = check_backbone(backbone, "model.init_args.backbone")
    from lightning_ssd.decoding.checks import check_confidence_threshold, check_exit_layer, check_modes, parse_draft

    n = init.get("n")
    if n is not None:
        check_exit_layer(n, num_layers, "model.init_args.n")
    max_new_tokens = init.get("max_new_tokens")
    if max_new_tokens is not None and max_new_tokens < 1:
        raise UsageError(f"model.init_args.max_new_tokens must be >= 1, got {max_new_tokens}")
    if init.get("draft") is not None:
        parse_draft(init.draft, "model.init_args.draft")
    check_confidence_threshold(init.get("confidence_threshold"), "model.init_args.confidence_threshold")
    if init.get("eval_modes") is not None:
        # whether the module has an imitation network is known once it is built; its setup() checks 'draft_imit'
        check_modes(init.eval_modes, True, n, "model.init_args.eval_modes")
