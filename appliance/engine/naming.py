"""Object ids and names: random 64-hex ids, Docker's name grammar and generated names."""

from __future__ import annotations

import random
import re
import secrets

from ..errors import InvalidParameter

_NAME = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")

_LEFT = ("admiring", "bold", "brave", "calm", "clever", "eager", "focused", "gallant", "happy",
         "jolly", "keen", "lucid", "nifty", "quirky", "serene", "sharp", "stoic", "vibrant", "wise",
         "zealous")
_RIGHT = ("babbage", "curie", "dijkstra", "euler", "feynman", "gauss", "hopper", "hypatia",
          "knuth", "lamport", "lovelace", "noether", "pike", "ritchie", "shannon", "thompson",
          "torvalds", "turing", "wozniak", "yonath")


def new_id() -> str:
    return secrets.token_hex(32)


def check_container_name(name: str) -> str:
    """The name without its leading slash, or dockerd's 400."""
    if not _NAME.match(name):
        raise InvalidParameter(
            f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name.lstrip("/")


def check_volume_name(name: str) -> str:
    if not _VOLUME_NAME.match(name):
        raise InvalidParameter(
            f'create {name}: "{name}" includes invalid characters for a local volume name, '
            "only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host "
            "directory, use absolute path")
    return name


def generated_name(rng: random.Random | None = None) -> str:
    r = rng or random
    return f"{r.choice(_LEFT)}_{r.choice(_RIGHT)}"
