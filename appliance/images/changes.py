"""``docker import --change`` / ``docker commit --change``: Dockerfile lines applied to a
container config, the way dockerd's BuildFromConfig does it (buildkit's parser and shell
lexer, moby's dispatchers). Pure: dicts in, a new dict out, InvalidParameter on error.

Valid change commands (moby's validCommitCommands): CMD, ENTRYPOINT, ENV, EXPOSE,
HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR. Anything else fails with
``<instr> is not a valid change command``.
"""

from __future__ import annotations

import ipaddress
import json
import re
import signal as _signal
from collections.abc import Sequence
from dataclasses import dataclass, field

from appliance.errors import InvalidParameter

VALID_CHANGE_COMMANDS = frozenset(
    {"cmd", "entrypoint", "healthcheck", "env", "expose", "label", "onbuild", "stopsignal",
     "user", "volume", "workdir"}
)
DEFAULT_SHELL = ("/bin/sh", "-c")
ESCAPE = "\\"

# Go's encoding/json field order of container.Config; None marks `json:",omitempty"`.
_CONFIG_FIELDS: tuple[tuple[str, object], ...] = (
    ("Hostname", ""), ("Domainname", ""), ("User", ""), ("AttachStdin", False),
    ("AttachStdout", False), ("AttachStderr", False), ("ExposedPorts", None), ("Tty", False),
    ("OpenStdin", False), ("StdinOnce", False), ("Env", ...), ("Cmd", ...),
    ("Healthcheck", None), ("ArgsEscaped", None), ("Image", ""), ("Volumes", ...),
    ("WorkingDir", ""), ("Entrypoint", ...), ("NetworkDisabled", None), ("MacAddress", None),
    ("OnBuild", ...), ("Labels", ...), ("StopSignal", None), ("StopTimeout", None),
    ("Shell", None),
)
_MAP_FIELDS = ("ExposedPorts", "Volumes", "Labels")
_HEALTH_FIELDS = ("Test", "Interval", "Timeout", "StartPeriod", "StartInterval", "Retries")


def empty_container_config() -> dict:
    """A zero container.Config as Go marshals it (omitempty fields absent, nil as None)."""
    return normalize_container_config({})


def normalize_container_config(config: dict) -> dict:
    """Reorder ``config`` into Go's field order, drop empty omitempty fields, sort maps.

    Unknown keys are kept, after the known ones.
    """
    out: dict = {}
    for key, zero in _CONFIG_FIELDS:
        value = config.get(key)
        if zero is None:  # omitempty
            if value in (None, "", False, 0, [], {}):
                continue
        elif zero is ...:  # nil-able slice or map: Go writes null
            pass
        elif value is None:
            value = zero
        if key in _MAP_FIELDS and isinstance(value, dict):
            value = {k: value[k] for k in sorted(value)}
        if key == "Healthcheck" and isinstance(value, dict):
            value = {k: value[k] for k in _HEALTH_FIELDS if value.get(k) not in (None, 0, [], "")}
        out[key] = value
    for key, value in config.items():
        if key not in out and key not in dict(_CONFIG_FIELDS):
            out[key] = value
    return out


# ---------------------------------------------------------------------------------------
# Parsing: buildkit's frontend/dockerfile/parser, reduced to what a change line can hold.

_WS = re.compile(r"[\t\v\f\r ]+")
_CONTINUATION = re.compile(r"\\[ \t]*$")


@dataclass
class _Node:
    """One instruction: its name as written, leading --flags, parsed args, raw line."""

    name: str
    flags: list[str]
    args: list[str]
    json_form: bool
    original: str
    sub: _Node | None = None


def _logical_lines(text: str) -> list[str]:
    out: list[str] = []
    pending = ""
    in_continuation = False
    for raw in text.split("\n"):
        line = raw.rstrip("\r")
        stripped = line.lstrip(" \t")
        if stripped.startswith("#"):
            continue
        if stripped == "":
            continue  # empty lines, also inside a continuation (buildkit warns)
        if _CONTINUATION.search(line):
            pending += _CONTINUATION.sub("", line)
            in_continuation = True
            continue
        out.append(pending + line)
        pending = ""
        in_continuation = False
    if in_continuation and pending.strip():
        out.append(pending)
    return out


def _extract_flags(rest: str) -> tuple[str, list[str]]:
    """buildkit's extractBuilderFlags: leading ``--x[=y]`` words; ``--`` ends them."""
    flags: list[str] = []
    pos = 0
    n = len(rest)
    while True:
        while pos < n and rest[pos].isspace():
            pos += 1
        if pos >= n or not rest.startswith("--", pos):
            return rest[pos:], flags
        word = ""
        quote = ""
        while pos < n:
            ch = rest[pos]
            if quote:
                if ch == quote:
                    quote = ""
                else:
                    word += ch
                pos += 1
                continue
            if ch.isspace():
                break
            if ch in "'\"":
                quote = ch
            elif ch == ESCAPE and pos + 1 < n:
                pos += 1
                word += rest[pos]
            else:
                word += ch
            pos += 1
        if word == "--":
            return rest[pos:].lstrip(), flags
        flags.append(word)


def _parse_words(rest: str) -> list[str]:
    """buildkit's parseWords: split on blanks outside quotes, keeping quotes and escapes."""
    words: list[str] = []
    word = ""
    quote = ""
    blank_ok = False
    in_word = False
    i = 0
    n = len(rest)
    while i < n:
        ch = rest[i]
        if not in_word and not quote:
            if ch.isspace():
                i += 1
                continue
            in_word = True
        if quote:
            if ch == quote:
                quote = ""
            elif ch == ESCAPE and quote != "'":
                if i + 1 == n:
                    i += 1
                    continue
                word += ch
                i += 1
                ch = rest[i]
            word += ch
            i += 1
            continue
        if ch.isspace():
            if blank_ok or word:
                words.append(word)
            word, blank_ok, in_word = "", False, False
            i += 1
            continue
        if ch in "'\"":
            quote = ch
            blank_ok = True
        elif ch == ESCAPE:
            if i + 1 == n:
                i += 1
                continue
            word += ch
            i += 1
            ch = rest[i]
        word += ch
        i += 1
    if in_word and (blank_ok or word):
        words.append(word)
    return words


def _parse_name_val(rest: str, key: str) -> list[str]:
    words = _parse_words(rest)
    if not words:
        return []
    if "=" not in words[0]:
        parts = _WS.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise InvalidParameter(f"{key} must have two arguments")
        return [parts[0], parts[1]]
    args: list[str] = []
    for word in words:
        if "=" not in word:
            raise InvalidParameter(
                f"Syntax error - can't find = in {_go_quote(word)}. Must be of the form: name=value"
            )
        k, v = word.split("=", 1)
        args += [k, v]
    return args


def _parse_json(rest: str) -> list[str] | None:
    """The array of strings ``rest`` starts with, or None when it is not JSON form."""
    rest = rest.lstrip()
    if not rest.startswith("["):
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(rest)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(v, str) for v in value):
        raise InvalidParameter(
            "when using JSON array syntax, arrays must be comprised of strings only"
        )
    return value


def _parse_maybe_json(rest: str) -> tuple[list[str], bool]:
    if rest == "":
        return [], False
    as_json = _parse_json(rest)
    if as_json is not None:
        return as_json, True
    return [rest], False


def _parse_line(line: str) -> _Node:
    parts = _WS.split(line.strip(), maxsplit=1)
    name = parts[0]
    rest, flags = _extract_flags(parts[1]) if len(parts) == 2 else ("", [])
    kind = name.lower()
    json_form = False
    sub = None
    if kind in ("cmd", "entrypoint", "run", "shell"):
        args, json_form = _parse_maybe_json(rest)
    elif kind in ("env", "label"):
        args = _parse_name_val(rest, "ENV" if kind == "env" else "LABEL")
    elif kind in ("expose", "from"):
        args = [] if rest == "" else [w for w in _WS.split(rest)]
    elif kind in ("volume", "add", "copy"):
        as_json = _parse_json(rest)
        if as_json is not None:
            args, json_form = as_json, True
        else:
            args = [] if rest == "" else [w for w in _WS.split(rest) if w != ""]
    elif kind == "healthcheck":
        m = re.match(r"(\S+)\s*(.*)", rest, re.DOTALL)
        if m is None:
            args = []
        else:
            inner, json_form = _parse_maybe_json(m.group(2))
            args = [m.group(1), *inner]
    elif kind == "onbuild":
        if rest == "":
            args = []
        else:
            sub = _parse_line(rest)
            args = [sub.name, *sub.args]
    else:  # user, workdir, stopsignal, maintainer, arg... and unknown words
        args = [] if rest == "" else [rest]
    return _Node(name=name, flags=flags, args=args, json_form=json_form, original=line, sub=sub)


def _parse_flags(node: _Node, known: Sequence[str]) -> dict[str, str]:
    """buildkit's BFlags.Parse for string flags."""
    values: dict[str, str] = {}
    for arg in node.flags:
        if not arg.startswith("--"):
            raise InvalidParameter(f"arg should start with -- : {arg}")
        if arg == "--":
            break
        name, eq, value = arg[2:].partition("=")
        if name not in known:
            raise InvalidParameter(f"unknown flag: {name}")
        if name in values:
            raise InvalidParameter(f"duplicate flag specified: {name}")
        if not eq:
            raise InvalidParameter(f"missing a value on flag: {name}")
        values[name] = value
    return values


# ---------------------------------------------------------------------------------------
# Shell word expansion: buildkit's frontend/dockerfile/shell lexer (ProcessWord(s)).

_SPECIAL_PARAMS = "@*#?-$!0"


class _Lexer:
    def __init__(self, text: str, env: dict[str, str]):
        self.text = text
        self.pos = 0
        self.env = env

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _next(self) -> str:
        ch = self._peek()
        self.pos += 1 if ch else 0
        return ch

    def process(self, stop: str = "") -> tuple[str, list[str]]:
        result: list[str] = []
        words = _Words()
        while self._peek():
            ch = self._peek()
            if stop and ch == stop:
                self._next()
                return "".join(result), words.get()
            if ch == "$":
                value = self._dollar()
                result.append(value)
                words.add_string(value)
            elif ch == "'":
                value = self._single_quote()
                result.append(value)
                words.add_raw(value)
            elif ch == '"':
                value = self._double_quote()
                result.append(value)
                words.add_raw(value)
            else:
                ch = self._next()
                if ch == ESCAPE:
                    ch = self._next()
                    if not ch:
                        break
                    words.add_raw(ch)
                else:
                    words.add_char(ch)
                result.append(ch)
        if stop:
            raise InvalidParameter(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.get()

    def _single_quote(self) -> str:
        self._next()
        out = []
        while True:
            ch = self._next()
            if not ch:
                raise InvalidParameter(
                    "unexpected end of statement while looking for matching single-quote"
                )
            if ch == "'":
                return "".join(out)
            out.append(ch)

    def _double_quote(self) -> str:
        self._next()
        out = []
        while True:
            ch = self._peek()
            if not ch:
                raise InvalidParameter(
                    "unexpected end of statement while looking for matching double-quote"
                )
            if ch == '"':
                self._next()
                return "".join(out)
            if ch == "$":
                out.append(self._dollar())
                continue
            ch = self._next()
            if ch == ESCAPE:
                nxt = self._peek()
                if not nxt:
                    continue
                if nxt in ('"', "$", ESCAPE):
                    ch = self._next()
            out.append(ch)

    def _name(self) -> str:
        name = ""
        while self._peek():
            ch = self._peek()
            if not name and ch.isdigit():
                while self._peek().isdigit():
                    name += self._next()
                return name
            if not name and ch in _SPECIAL_PARAMS:
                return self._next()
            if not (ch.isalnum() or ch == "_"):
                break
            name += self._next()
        return name

    def _dollar(self) -> str:
        self._next()
        if self._peek() != "{":
            name = self._name()
            if name == "":
                return "$"
            return self.env.get(name, "")
        self._next()
        ch = self._peek()
        if not ch:
            raise InvalidParameter("syntax error: missing '}'")
        if ch in "{}:":
            raise InvalidParameter("syntax error: bad substitution")
        name = self._name()
        ch = self._next()
        if not ch:
            raise InvalidParameter("syntax error: missing '}'")
        is_set = name in self.env
        value = self.env.get(name, "")
        if ch == "}":
            return value
        if ch == ":":
            modifier = self._next()
            word, _ = self.process("}")
            if modifier == "+":
                return word if value != "" else ""
            if modifier == "-":
                return word if value == "" else value
            if modifier == "?":
                if not is_set:
                    raise InvalidParameter(f"{name}: {word or 'is not allowed to be unset'}")
                if value == "":
                    raise InvalidParameter(f"{name}: {word or 'is not allowed to be empty'}")
                return value
            raise InvalidParameter(f"unsupported modifier ({modifier}) in substitution")
        if ch in "+-?":
            word, _ = self.process("}")
            if ch == "+":
                return word if is_set else ""
            if ch == "-":
                return value if is_set else word
            if not is_set:
                raise InvalidParameter(f"{name}: {word or 'is not allowed to be unset'}")
            return value
        raise InvalidParameter(f"unsupported modifier ({ch}) in substitution")


@dataclass
class _Words:
    words: list[str] = field(default_factory=list)
    word: str = ""
    in_word: bool = False

    def add_char(self, ch: str) -> None:
        if ch.isspace():
            if self.in_word and self.word:
                self.words.append(self.word)
                self.word, self.in_word = "", False
        else:
            self.add_raw(ch)

    def add_raw(self, s: str) -> None:
        self.word += s
        self.in_word = True

    def add_string(self, s: str) -> None:
        for ch in s:
            self.add_char(ch)

    def get(self) -> list[str]:
        if self.word:
            self.words.append(self.word)
            self.word, self.in_word = "", False
        return self.words


def process_word(word: str, env: dict[str, str]) -> str:
    """Quote removal plus $VAR / ${VAR:-x} expansion of one word (buildkit's ProcessWord)."""
    return _Lexer(word, env).process()[0]


def process_words(word: str, env: dict[str, str]) -> list[str]:
    """Like process_word, then split on unquoted blanks (buildkit's ProcessWords)."""
    return _Lexer(word, env).process()[1]


# ---------------------------------------------------------------------------------------
# Dispatch: moby's daemon/builder/dockerfile/dispatchers.go on a config dict.


@dataclass
class _State:
    config: dict
    cmd_set: bool = False

    def env_map(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for item in self.config.get("Env") or []:
            k, _, v = item.partition("=")
            out[k] = v
        return out


def apply_changes(config: dict, changes: Sequence[str], os: str = "linux") -> dict:
    """Apply ``--change`` lines to a container config dict; returns a new normalized dict.

    With no changes the config comes back unchanged (normalized).
    """
    state = _State(config=_copy_config(config))
    if not changes:
        return normalize_container_config(state.config)
    nodes = [_parse_line(line) for line in _logical_lines("\n".join(changes))]
    if not nodes:
        raise InvalidParameter("file with no instructions")
    for node in nodes:
        if node.name.lower() not in VALID_CHANGE_COMMANDS:
            raise InvalidParameter(f"{node.name} is not a valid change command")
    commands = [_parse_command(node) for node in nodes]
    for command in commands:
        command(state, os)
    return normalize_container_config(state.config)


def _copy_config(config: dict) -> dict:
    return json.loads(json.dumps(config)) if config else {}


def _expand_all(state: _State, words: Sequence[str]) -> list[str]:
    env = state.env_map()
    return [process_word(w, env) for w in words]


def _parse_command(node: _Node):
    """ParseCommand: argument checks happen for every line before any dispatch."""
    kind = node.name.lower()
    args = node.args
    if kind == "healthcheck":
        return _parse_healthcheck(node)
    _parse_flags(node, ())
    if kind in ("env", "label"):
        upper = kind.upper()
        if not args:
            raise InvalidParameter(f"{upper} requires at least one argument")
        if len(args) % 2:
            raise InvalidParameter(f"Bad input to {upper}, too many arguments")
        if any(args[i] == "" for i in range(0, len(args), 2)):
            raise InvalidParameter(f"{upper} names can not be blank")
        return (lambda s, _os: _dispatch_env(s, args)) if kind == "env" else (
            lambda s, _os: _dispatch_label(s, args))
    if kind in ("cmd", "entrypoint"):
        cmdline = list(args) if node.json_form else ([" ".join(args)] if args else [])
        prepend = not node.json_form
        if kind == "entrypoint":
            return lambda s, os_: _dispatch_entrypoint(s, cmdline, prepend, os_)
        return lambda s, os_: _dispatch_cmd(s, cmdline, prepend, os_)
    if kind in ("user", "workdir", "stopsignal"):
        if len(args) != 1:
            raise InvalidParameter(f"{kind.upper()} requires exactly one argument")
        return {"user": _dispatch_user, "workdir": _dispatch_workdir,
                "stopsignal": _dispatch_stopsignal}[kind](args[0])
    if kind == "expose":
        if not args:
            raise InvalidParameter("EXPOSE requires at least one argument")
        ports = sorted(args)
        return lambda s, _os: _dispatch_expose(s, ports)
    if kind == "volume":
        if not args:
            raise InvalidParameter("VOLUME requires at least one argument")
        volumes = []
        for v in args:
            v = v.strip()
            if v == "":
                raise InvalidParameter("VOLUME specified can not be an empty string")
            volumes.append(v)
        return lambda s, _os: _dispatch_volume(s, volumes)
    if kind == "onbuild":
        return _parse_onbuild(node)
    raise InvalidParameter(f"{node.name} is not a valid change command")  # pragma: no cover


def _shell(state: _State, os: str) -> list[str]:
    shell = state.config.get("Shell")
    return list(shell) if shell else list(DEFAULT_SHELL)


def _resolve_cmdline(state: _State, cmdline: list[str], prepend: bool, os: str) -> list[str]:
    if not cmdline:
        return []
    if not prepend:
        return list(cmdline)
    return _shell(state, os) + cmdline


def _dispatch_cmd(state: _State, cmdline: list[str], prepend: bool, os: str) -> None:
    state.config["Cmd"] = _resolve_cmdline(state, cmdline, prepend, os)
    if cmdline:
        state.config.pop("ArgsEscaped", None)
        state.cmd_set = True


def _dispatch_entrypoint(state: _State, cmdline: list[str], prepend: bool, os: str) -> None:
    state.config["Entrypoint"] = _resolve_cmdline(state, cmdline, prepend, os)
    if cmdline:
        state.config.pop("ArgsEscaped", None)
    if not state.cmd_set:
        state.config["Cmd"] = None


def _dispatch_env(state: _State, args: list[str]) -> None:
    expanded = _expand_all(state, args)
    env = list(state.config.get("Env") or [])
    for i in range(0, len(expanded), 2):
        name, value = expanded[i], expanded[i + 1]
        new = f"{name}={value}"
        for j, item in enumerate(env):
            if item.split("=", 1)[0] == name:
                env[j] = new
                break
        else:
            env.append(new)
    state.config["Env"] = env


def _dispatch_label(state: _State, args: list[str]) -> None:
    expanded = _expand_all(state, args)
    labels = dict(state.config.get("Labels") or {})
    for i in range(0, len(expanded), 2):
        labels[expanded[i]] = expanded[i + 1]
    state.config["Labels"] = labels


def _dispatch_user(user: str):
    def run(state: _State, _os: str) -> None:
        state.config["User"] = _expand_all(state, [user])[0]
    return run


def _dispatch_workdir(path: str):
    def run(state: _State, _os: str) -> None:
        requested = _expand_all(state, [path])[0]
        if requested == "":
            raise InvalidParameter("cannot normalize nothing")
        current = state.config.get("WorkingDir") or ""
        if requested.startswith("/"):
            state.config["WorkingDir"] = go_clean(requested)
        else:
            state.config["WorkingDir"] = go_clean("/" + current + "/" + requested)
    return run


def _dispatch_stopsignal(sig: str):
    def run(state: _State, _os: str) -> None:
        value = _expand_all(state, [sig])[0]
        parse_signal(value)
        state.config["StopSignal"] = value
    return run


def _dispatch_expose(state: _State, ports: list[str]) -> None:
    env = state.env_map()
    words: list[str] = []
    for p in ports:
        words += process_words(p, env)
    exposed = dict(state.config.get("ExposedPorts") or {})
    for spec in words:
        for port in parse_port_spec(spec):
            exposed[port] = {}
    state.config["ExposedPorts"] = exposed


def _dispatch_volume(state: _State, volumes: list[str]) -> None:
    expanded = _expand_all(state, volumes)
    current = dict(state.config.get("Volumes") or {})
    for v in expanded:
        if v == "":
            raise InvalidParameter("VOLUME specified can not be an empty string")
        current[v] = {}
    state.config["Volumes"] = current


def _parse_onbuild(node: _Node):
    if not node.args:
        raise InvalidParameter("ONBUILD requires at least one argument")
    _parse_flags(node, ())
    trigger = node.args[0].strip().upper()
    if trigger == "ONBUILD":
        raise InvalidParameter("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger in ("MAINTAINER", "FROM"):
        raise InvalidParameter(f"{trigger} isn't allowed as an ONBUILD trigger")
    expression = re.sub(r"(?i)^\s*ONBUILD\s*", "", node.original)

    def run(state: _State, _os: str) -> None:
        state.config["OnBuild"] = list(state.config.get("OnBuild") or []) + [expression]
    return run


_MIN_DURATION_NS = 1_000_000


def _parse_healthcheck(node: _Node):
    if not node.args:
        raise InvalidParameter("HEALTHCHECK requires at least one argument")
    typ = node.args[0].upper()
    args = node.args[1:]
    if typ == "NONE":
        if args:
            raise InvalidParameter("HEALTHCHECK NONE takes no arguments")
        health: dict = {"Test": ["NONE"]}
    else:
        flags = _parse_flags(node, ("interval", "timeout", "start-period", "start-interval",
                                    "retries"))
        if typ != "CMD":
            raise InvalidParameter(f"Unknown type {_go_quote(typ)} in HEALTHCHECK (try CMD)")
        cmd = list(args) if node.json_form else ([" ".join(args)] if args else [])
        if not cmd:
            raise InvalidParameter("Missing command after HEALTHCHECK CMD")
        health = {"Test": [typ if node.json_form else "CMD-SHELL", *cmd]}
        for flag, key in (("interval", "Interval"), ("timeout", "Timeout"),
                          ("start-period", "StartPeriod"), ("start-interval", "StartInterval")):
            value = flags.get(flag, "")
            if value == "":
                continue
            ns = parse_go_duration(value)
            if ns != 0 and ns < _MIN_DURATION_NS:
                raise InvalidParameter(f"Interval {_go_quote(flag)} cannot be less than 1ms")
            if ns:
                health[key] = ns
        retries = flags.get("retries", "")
        if retries != "":
            try:
                n = int(retries, 10)
                if not re.fullmatch(r"[+-]?[0-9]+", retries) or not -2**31 <= n < 2**31:
                    raise ValueError
            except ValueError:
                raise InvalidParameter(
                    f"strconv.ParseInt: parsing {_go_quote(retries)}: invalid syntax"
                ) from None
            if n < 0:
                raise InvalidParameter(f"--retries cannot be negative ({n})")
            if n:
                health["Retries"] = n

    def run(state: _State, _os: str) -> None:
        state.config["Healthcheck"] = dict(health)
    return run


# ---------------------------------------------------------------------------------------
# Small Go-compatible helpers.


def go_clean(path: str) -> str:
    """Go's path.Clean."""
    if path == "":
        return "."
    rooted = path.startswith("/")
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    cleaned = "/".join(out)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


_DURATION_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
                   "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> int:
    """Go's time.ParseDuration, in nanoseconds."""
    err = InvalidParameter(f"time: invalid duration {_go_quote(text)}")
    s = text
    sign = 1
    if s[:1] in ("+", "-"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if s == "":
        raise err
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None or m.group(1) in ("", "."):
            if m is None and re.match(r"[0-9.]+$", s[pos:]):
                raise InvalidParameter(f"time: missing unit in duration {_go_quote(text)}")
            raise err
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return sign * int(round(total))


def parse_signal(raw: str) -> int:
    """moby/sys/signal ParseSignal: a number or a name with or without SIG."""
    if re.fullmatch(r"[+-]?[0-9]+", raw):
        n = int(raw)
        if n == 0:
            raise InvalidParameter(f"Invalid signal: {raw}")
        return n
    name = raw.upper()
    if name.startswith("SIG"):
        name = name[3:]
    table = _signal_table()
    if name not in table:
        raise InvalidParameter(f"Invalid signal: {raw}")
    return table[name]


def _signal_table() -> dict[str, int]:
    table = {s.name[3:]: int(s) for s in _signal.Signals
             if s.name.startswith("SIG") and not s.name.startswith("SIG_")}
    rtmin, rtmax = 34, 64
    table["RTMIN"] = rtmin
    table["RTMAX"] = rtmax
    for i in range(1, 16):
        table[f"RTMIN+{i}"] = rtmin + i
        table[f"RTMAX-{i}"] = rtmax - i
    return table


def parse_port_spec(raw: str) -> list[str]:
    """go-connections nat.ParsePortSpec, keeping only the container side: "port/proto"."""
    parts = raw.split(":")
    if len(parts) == 1:
        ip, container = "", parts[0]
    elif len(parts) == 2:
        ip, container = "", parts[1]
    elif len(parts) == 3:
        ip, container = parts[0], parts[2]
    else:
        ip, container = ":".join(parts[:-2]), parts[-1]
    proto, container = _split_proto_port(container)
    if ip.startswith("[") and ip.endswith("]"):
        ip = ip[1:-1]
    if ip:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise InvalidParameter(f"invalid IP address: {ip}") from None
    if container == "":
        raise InvalidParameter(f"no port specified: {raw}<empty>")
    try:
        start, end = _parse_port_range(container)
    except ValueError:
        raise InvalidParameter(f"invalid containerPort: {container}") from None
    proto = proto.lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise InvalidParameter(f"invalid proto: {proto}")
    return [f"{p}/{proto}" for p in range(start, end + 1)]


def _split_proto_port(raw: str) -> tuple[str, str]:
    parts = raw.split("/")
    if raw == "" or parts[0] == "":
        return "", ""
    if len(parts) == 1:
        return "tcp", raw
    if parts[1] == "":
        return "tcp", parts[0]
    return parts[1], parts[0]


def _parse_port_range(ports: str) -> tuple[int, int]:
    def one(s: str) -> int:
        if not re.fullmatch(r"[0-9]+", s):
            raise ValueError(s)
        n = int(s)
        if n > 65535:
            raise ValueError(s)
        return n

    if "-" not in ports:
        n = one(ports)
        return n, n
    start_s, _, end_s = ports.partition("-")
    start, end = one(start_s), one(end_s)
    if end < start:
        raise ValueError(ports)
    return start, end


def _go_quote(s: str) -> str:
    out = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{out}"'
