"""Image config building (docker import), --change handling, parsing, history."""

from __future__ import annotations

import hashlib
import json

import pytest

from appliance.errors import InvalidParameter
from appliance.images.changes import (
    parse_go_duration,
    parse_port_spec,
    parse_signal,
    process_word,
    process_words,
)
from appliance.images.config import (
    HistoryEntry,
    apply_changes,
    empty_container_config,
    encode_json,
    format_rfc3339nano,
    history,
    image_id,
    import_config,
    parse_config,
    parse_rfc3339,
)

DIFF = "sha256:" + "d" * 64
NS = 1_700_000_000_123_456_789


def changed(*lines: str, base: dict | None = None) -> dict:
    return apply_changes(base if base is not None else empty_container_config(), list(lines))


# -- import config ----------------------------------------------------------------------


def test_import_config_bytes_match_dockerd():
    blob = import_config(diff_id=DIFF, created_ns=NS, docker_version="28.2.2")
    zero = ('{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,'
            '"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,'
            '"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,'
            '"OnBuild":null,"Labels":null}')
    want = ('{"architecture":"amd64","comment":"Imported from -","config":' + zero
            + ',"container_config":' + zero
            + ',"created":"2023-11-14T22:13:20.123456789Z","docker_version":"28.2.2",'
            '"history":[{"created":"2023-11-14T22:13:20.123456789Z","comment":"Imported from -"}],'
            '"os":"linux","rootfs":{"type":"layers","diff_ids":["' + DIFF + '"]}}')
    assert blob.decode() == want
    assert image_id(blob) == "sha256:" + hashlib.sha256(blob).hexdigest()


def test_import_config_with_changes_and_message():
    cfg = changed('CMD ["/bin/sh"]', "ENV PATH=/usr/bin:/bin")
    blob = import_config(diff_id=DIFF, created_ns=NS, config=cfg, comment="my msg")
    data = json.loads(blob)
    assert list(data) == sorted(data)
    assert data["comment"] == "my msg"
    assert data["history"] == [{"created": "2023-11-14T22:13:20.123456789Z", "comment": "my msg"}]
    assert data["config"]["Cmd"] == ["/bin/sh"]
    assert data["config"]["Env"] == ["PATH=/usr/bin:/bin"]
    assert "docker_version" not in data
    assert import_config(diff_id=DIFF, created_ns=NS, config=cfg, comment="my msg") == blob


def test_import_config_rejects_bad_diff_id():
    with pytest.raises(InvalidParameter):
        import_config(diff_id="sha256:xyz", created_ns=0)


def test_encode_json_escapes_like_go():
    assert encode_json({"a": "<b>&é\u2028"}) == '{"a":"\\u003cb\\u003e\\u0026é\\u2028"}'.encode()


@pytest.mark.parametrize("ns,text", [
    (0, "1970-01-01T00:00:00Z"),
    (1_700_000_000_000_000_000, "2023-11-14T22:13:20Z"),
    (1_700_000_000_500_000_000, "2023-11-14T22:13:20.5Z"),
    (1_700_000_000_000_000_001, "2023-11-14T22:13:20.000000001Z"),
])
def test_rfc3339nano(ns, text):
    assert format_rfc3339nano(ns) == text
    assert parse_rfc3339(text) == ns


def test_parse_rfc3339_offsets_and_errors():
    assert parse_rfc3339("2023-11-14T23:13:20.5+01:00") == 1_700_000_000_500_000_000
    with pytest.raises(InvalidParameter):
        parse_rfc3339("yesterday")


# -- parse_config / history ------------------------------------------------------------


def test_parse_config_roundtrip():
    blob = import_config(diff_id=DIFF, created_ns=NS)
    cfg = parse_config(blob)
    assert cfg.diff_ids == (DIFF,)
    assert (cfg.os, cfg.architecture, cfg.comment) == ("linux", "amd64", "Imported from -")
    assert cfg.created_ns == NS
    assert cfg.created_unix == NS // 10**9
    assert cfg.config["Cmd"] is None


@pytest.mark.parametrize("blob,match", [
    (b"not json", "invalid image JSON"),
    (b"[]", "not an object"),
    (b"{}", "no RootFS key"),
    (b'{"rootfs":{"type":"layers","diff_ids":["md5:x"]}}', "diff_ids"),
    (b'{"rootfs":{"type":"other","diff_ids":[]}}', "rootfs type"),
])
def test_parse_config_errors(blob, match):
    with pytest.raises(InvalidParameter, match=match):
        parse_config(blob)


def test_history_newest_first_with_sizes():
    blob = json.dumps({
        "created": "2024-01-01T00:00:00Z",
        "rootfs": {"type": "layers", "diff_ids": [DIFF, "sha256:" + "e" * 64]},
        "history": [
            {"created": "2024-01-01T00:00:00Z", "created_by": "/bin/sh -c #(nop) ADD file"},
            {"created": "2024-01-01T00:00:01Z", "created_by": "CMD [\"sh\"]", "empty_layer": True},
            {"created": "2024-01-01T00:00:02Z", "created_by": "RUN x", "comment": "c"},
        ],
    }).encode()
    rows = history(parse_config(blob), [100, 7])
    assert rows == [
        HistoryEntry(1704067202, "RUN x", 7, "c", False),
        HistoryEntry(1704067201, 'CMD ["sh"]', 0, "", True),
        HistoryEntry(1704067200, "/bin/sh -c #(nop) ADD file", 100, "", False),
    ]


def test_history_of_an_import():
    rows = history(parse_config(import_config(diff_id=DIFF, created_ns=NS)), [42])
    assert rows == [HistoryEntry(NS // 10**9, "", 42, "Imported from -", False)]


# -- --change --------------------------------------------------------------------------


def test_no_changes_returns_config_unchanged():
    assert changed() == empty_container_config()


@pytest.mark.parametrize("line,key,value", [
    ('CMD ["echo", "hi"]', "Cmd", ["echo", "hi"]),
    ('CMD echo "hi there" > /x', "Cmd", ["/bin/sh", "-c", 'echo "hi there" > /x']),
    ("CMD []", "Cmd", []),
    ('CMD ["unterminated"', "Cmd", ["/bin/sh", "-c", '["unterminated"']),
    ('ENTRYPOINT ["/tini", "--"]', "Entrypoint", ["/tini", "--"]),
    ("ENTRYPOINT exec top -b", "Entrypoint", ["/bin/sh", "-c", "exec top -b"]),
    ("ENTRYPOINT []", "Entrypoint", []),
    ("ENV A=1", "Env", ["A=1"]),
    ("ENV A 1 2 3", "Env", ["A=1 2 3"]),
    ('ENV A="a b" B=c\\ d C=\'$HOME\'', "Env", ["A=a b", "B=c d", "C=$HOME"]),
    ("WORKDIR /app", "WorkingDir", "/app"),
    ("WORKDIR /a/b/../c/", "WorkingDir", "/a/c"),
    ("WORKDIR rel", "WorkingDir", "/rel"),
    ("USER app:app", "User", "app:app"),
    ("USER 1000", "User", "1000"),
    ('LABEL a=b "c d"="e f" g=', "Labels", {"a": "b", "c d": "e f", "g": ""}),
    ("LABEL maintainer someone@example.com", "Labels", {"maintainer": "someone@example.com"}),
    ("EXPOSE 80", "ExposedPorts", {"80/tcp": {}}),
    ("EXPOSE 80 80/udp 443/TCP 53/sctp", "ExposedPorts",
     {"443/tcp": {}, "53/sctp": {}, "80/tcp": {}, "80/udp": {}}),
    ("EXPOSE 7000-7002/udp", "ExposedPorts", {"7000/udp": {}, "7001/udp": {}, "7002/udp": {}}),
    ("VOLUME /data", "Volumes", {"/data": {}}),
    ("VOLUME /a /b", "Volumes", {"/a": {}, "/b": {}}),
    ('VOLUME ["/c", "/d e"]', "Volumes", {"/c": {}, "/d e": {}}),
    ("STOPSIGNAL SIGKILL", "StopSignal", "SIGKILL"),
    ("STOPSIGNAL 9", "StopSignal", "9"),
    ("ONBUILD RUN make", "OnBuild", ["RUN make"]),
    ("HEALTHCHECK NONE", "Healthcheck", {"Test": ["NONE"]}),
    ('HEALTHCHECK --interval=30s --timeout=1m30s --start-period=1s --retries=3 '
     'CMD ["curl", "-f", "http://localhost/"]', "Healthcheck",
     {"Test": ["CMD", "curl", "-f", "http://localhost/"], "Interval": 30_000_000_000,
      "Timeout": 90_000_000_000, "StartPeriod": 1_000_000_000, "Retries": 3}),
    ("HEALTHCHECK CMD curl -f http://x/ || exit 1", "Healthcheck",
     {"Test": ["CMD-SHELL", "curl -f http://x/ || exit 1"]}),
])
def test_single_change(line, key, value):
    assert changed(line)[key] == value


def test_lowercase_instructions_are_accepted():
    cfg = changed("cmd [\"a\"]", "env X=1", "user nobody")
    assert (cfg["Cmd"], cfg["Env"], cfg["User"]) == (["a"], ["X=1"], "nobody")


def test_env_replaces_existing_and_expands_earlier_values():
    cfg = changed("ENV A=1 B=2", "ENV A=3 C=$B-${A} D=${NOPE:-dflt} E=${A:+set}",
                  base={"Env": ["PATH=/bin", "B=old"]})
    assert cfg["Env"] == ["PATH=/bin", "B=2", "A=3", "C=2-1", "D=dflt", "E=set"]


def test_env_in_one_instruction_sees_the_previous_values():
    assert changed("ENV A=1", "ENV A=2 B=$A")["Env"] == ["A=2", "B=1"]


def test_expansion_in_workdir_user_label_volume_expose():
    cfg = changed("ENV D=/srv U=web P=8080 L=lab", "WORKDIR $D/app", "USER ${U}",
                  "LABEL $L=\"$D\"", "VOLUME $D/data", "EXPOSE $P")
    assert cfg["WorkingDir"] == "/srv/app"
    assert cfg["User"] == "web"
    assert cfg["Labels"] == {"lab": "/srv"}
    assert cfg["Volumes"] == {"/srv/data": {}}
    assert cfg["ExposedPorts"] == {"8080/tcp": {}}


def test_expose_word_splits_a_variable():
    assert changed("ENV PORTS=\"80 443\"", "EXPOSE $PORTS")["ExposedPorts"] == {
        "443/tcp": {}, "80/tcp": {}}


def test_entrypoint_clears_cmd_unless_cmd_came_first():
    base = {"Cmd": ["old"]}
    assert changed('ENTRYPOINT ["e"]', base=base)["Cmd"] is None
    assert changed('CMD ["c"]', 'ENTRYPOINT ["e"]', base=base)["Cmd"] == ["c"]
    assert changed('ENTRYPOINT ["e"]', 'CMD ["c"]', base=base)["Cmd"] == ["c"]


def test_shell_form_uses_the_configured_shell():
    assert changed("CMD echo hi", base={"Shell": ["/bin/bash", "-c"]})["Cmd"] == [
        "/bin/bash", "-c", "echo hi"]


def test_comments_blank_lines_and_continuations():
    cfg = changed("# a comment", "", "ENV A=1 \\", "  B=2", "CMD echo \\", "hi")
    assert cfg["Env"] == ["A=1", "B=2"]
    assert cfg["Cmd"] == ["/bin/sh", "-c", "echo hi"]


def test_several_changes_in_one_string():
    cfg = changed("ENV A=1\nUSER x")
    assert cfg["Env"] == ["A=1"] and cfg["User"] == "x"


def test_changes_do_not_mutate_the_input():
    base = {"Env": ["A=1"], "Labels": {"x": "y"}}
    changed("ENV A=2", "LABEL x=z", base=base)
    assert base == {"Env": ["A=1"], "Labels": {"x": "y"}}


def test_key_order_is_gos():
    cfg = changed("STOPSIGNAL 1", "EXPOSE 1", "HEALTHCHECK NONE")
    keys = list(cfg)
    assert keys.index("ExposedPorts") == keys.index("AttachStderr") + 1
    assert keys.index("Healthcheck") == keys.index("Cmd") + 1
    assert keys[-1] == "StopSignal"


@pytest.mark.parametrize("line,message", [
    ("RUN echo", "RUN is not a valid change command"),
    ("run echo", "run is not a valid change command"),
    ("FROM busybox", "FROM is not a valid change command"),
    ("COPY a b", "COPY is not a valid change command"),
    ("ADD a b", "ADD is not a valid change command"),
    ("SHELL [\"/bin/bash\"]", "SHELL is not a valid change command"),
    ("ARG x", "ARG is not a valid change command"),
    ("MAINTAINER me", "MAINTAINER is not a valid change command"),
    ("BOGUS x", "BOGUS is not a valid change command"),
    ("ENV", "ENV requires at least one argument"),
    ("ENV A", "ENV must have two arguments"),
    ("ENV A=1 B", "Syntax error - can't find = in \"B\". Must be of the form: name=value"),
    ("ENV =1", "ENV names can not be blank"),
    ("LABEL", "LABEL requires at least one argument"),
    ("USER", "USER requires exactly one argument"),
    ("WORKDIR", "WORKDIR requires exactly one argument"),
    ("EXPOSE", "EXPOSE requires at least one argument"),
    ("EXPOSE 80/xyz", "invalid proto: xyz"),
    ("EXPOSE http", "invalid containerPort: http"),
    ("EXPOSE 99999", "invalid containerPort: 99999"),
    ("VOLUME", "VOLUME requires at least one argument"),
    ('VOLUME [""]', "VOLUME specified can not be an empty string"),
    ("STOPSIGNAL SIGNOPE", "Invalid signal: SIGNOPE"),
    ("STOPSIGNAL 0", "Invalid signal: 0"),
    ('CMD ["a", 1]', "when using JSON array syntax, arrays must be comprised of strings only"),
    ("CMD --flag x", "unknown flag: flag"),
    ("ONBUILD", "ONBUILD requires at least one argument"),
    ("ONBUILD ONBUILD RUN x", "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
    ("ONBUILD FROM x", "FROM isn't allowed as an ONBUILD trigger"),
    ("HEALTHCHECK", "HEALTHCHECK requires at least one argument"),
    ("HEALTHCHECK NONE x", "HEALTHCHECK NONE takes no arguments"),
    ("HEALTHCHECK BAD x", 'Unknown type "BAD" in HEALTHCHECK (try CMD)'),
    ("HEALTHCHECK CMD", "Missing command after HEALTHCHECK CMD"),
    ("HEALTHCHECK --interval=10us CMD x", 'Interval "interval" cannot be less than 1ms'),
    ("HEALTHCHECK --interval=abc CMD x", 'time: invalid duration "abc"'),
    ("HEALTHCHECK --retries=-1 CMD x", "--retries cannot be negative (-1)"),
    ("HEALTHCHECK --nope=1 CMD x", "unknown flag: nope"),
    ("ENV A=\"x", "unexpected end of statement while looking for matching double-quote"),
    ("ENV A='x", "unexpected end of statement while looking for matching single-quote"),
    ("ENV A=${B", "syntax error: missing '}'"),
    ("ENV A=${B:-x", "unexpected end of statement while looking for matching }"),
    ("ENV A=${B*x}", "unsupported modifier (*) in substitution"),
    ("ENV A=${}", "syntax error: bad substitution"),
    ("ENV A=${B?}", "B: is not allowed to be unset"),
    ("# only a comment", "file with no instructions"),
])
def test_change_errors(line, message):
    with pytest.raises(InvalidParameter) as info:
        changed(line)
    assert info.value.message == message


def test_an_invalid_command_anywhere_fails_before_anything_applies():
    with pytest.raises(InvalidParameter, match="RUN is not a valid change command"):
        changed("ENV A=1", "RUN x")


# -- helpers -----------------------------------------------------------------------------


@pytest.mark.parametrize("word,want", [
    ("plain", "plain"), ("'$A'", "$A"), ('"$A"', "1"), ("$A$B", "12"), ("${A}x", "1x"),
    ("\\$A", "$A"), ('"a\\"b"', 'a"b'), ('"a\\b"', "a\\b"), ("$", "$"), ("$1", ""),
    ("${C:-d}", "d"), ("${A:-d}", "1"), ("${C-d}", "d"), ("${E-d}", ""), ("${E:-d}", "d"),
    ("${A:+y}", "y"), ("${C:+y}", ""), ("${E+y}", "y"),
])
def test_process_word(word, want):
    assert process_word(word, {"A": "1", "B": "2", "E": ""}) == want


def test_process_words_splits_unquoted_expansions():
    assert process_words('$P "x y" z', {"P": "1  2"}) == ["1", "2", "x y", "z"]


@pytest.mark.parametrize("text,ns", [
    ("0", 0), ("1s", 10**9), ("1m30s", 90 * 10**9), ("1.5h", 5400 * 10**9), ("300ms", 3 * 10**8),
    ("2us", 2000), ("2µs", 2000), ("7ns", 7), ("-1s", -(10**9)),
])
def test_parse_go_duration(text, ns):
    assert parse_go_duration(text) == ns


def test_parse_port_spec_and_signal():
    assert parse_port_spec("127.0.0.1:8080:80/udp") == ["80/udp"]
    assert parse_port_spec("8080:80") == ["80/tcp"]
    with pytest.raises(InvalidParameter, match="invalid IP address"):
        parse_port_spec("nope:1:2")
    assert parse_signal("TERM") == 15 and parse_signal("sigkill") == 9
    assert parse_signal("RTMIN+3") == 37
