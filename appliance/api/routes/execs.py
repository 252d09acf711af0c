"""/containers/{id}/exec, /exec/{id}/json, /exec/{id}/resize; exec start is served by the hijack path."""

from __future__ import annotations

import json

from quart import Blueprint, Response

from ...engine.detach import parse_detach_keys
from ...engine.execs import ExecConfig
from ...errors import InvalidParameter
from ..jsonfields import get_bool, get_str, get_str_list
from .params import body_json, uint32

_E = "ExecConfig"


def parse_exec(body: dict) -> ExecConfig:
    size = body.get("ConsoleSize") or [0, 0]
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v >= 0 for v in size)):
        raise InvalidParameter("invalid ConsoleSize: want [height, width]")
    return ExecConfig(cmd=get_str_list(body, "Cmd", _E) or [], env=get_str_list(body, "Env", _E) or [],
                      user=get_str(body, "User", _E), working_dir=get_str(body, "WorkingDir", _E),
                      tty=get_bool(body, "Tty", _E), attach_stdin=get_bool(body, "AttachStdin", _E),
                      attach_stdout=get_bool(body, "AttachStdout", _E),
                      attach_stderr=get_bool(body, "AttachStderr", _E),
                      privileged=get_bool(body, "Privileged", _E), console_size=(size[0], size[1]),
                      detach_keys=_detach_keys(get_str(body, "DetachKeys", _E)))


def _detach_keys(keys: str) -> bytes:
    try:
        return parse_detach_keys(keys)
    except InvalidParameter:  # exec words it differently from attach
        raise InvalidParameter(f"Invalid escape keys ({keys}) provided") from None


def exec_json(inst) -> dict:
    cfg = inst.config
    return {"ID": inst.id, "Running": inst.running, "ExitCode": inst.exit_code, "CanRemove": False,
            "ContainerID": inst.container_id, "DetachKeys": "", "OpenStdin": cfg.attach_stdin,
            "OpenStdout": cfg.attach_stdout, "OpenStderr": cfg.attach_stderr, "Pid": inst.pid,
            "ProcessConfig": {"tty": cfg.tty, "entrypoint": cfg.cmd[0], "arguments": cfg.cmd[1:],
                              "privileged": cfg.privileged, "user": cfg.user}}


def blueprint(engine) -> Blueprint:
    bp = Blueprint("execs", __name__)
    execs = engine.execs

    @bp.post("/containers/<ref>/exec")
    async def create(ref):
        inst = execs.create(ref, parse_exec(await body_json(allow_empty=False)))
        return Response(json.dumps({"Id": inst.id}), status=201, content_type="application/json")

    @bp.post("/exec/<exec_id>/start")
    async def start_detached(exec_id):
        # A detached start travels on a pooled keep-alive connection, so it reaches hypercorn;
        # an attached one is always hijacked by the front on a fresh connection.
        body = await body_json()
        if not get_bool(body, "Detach", "ExecStartCheck"):
            raise InvalidParameter("an attached exec start needs a fresh connection with 'Upgrade: tcp'")
        await execs.start_detached(exec_id)
        return Response(b"", status=200)

    @bp.get("/exec/<exec_id>/json")
    async def inspect(exec_id):
        return Response(json.dumps(exec_json(execs.get(exec_id))), content_type="application/json")

    @bp.post("/exec/<exec_id>/resize")
    async def resize(exec_id):
        # dockerd takes any uint32; the kernel's winsize holds 16 bits, so clamp
        h, w = uint32("h"), uint32("w")
        await execs.resize(exec_id, min(h, 65535), min(w, 65535))
        return Response(b"", status=200)

    return bp
