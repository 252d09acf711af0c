"""Docker's `--user` resolution against the image's /etc/passwd and /etc/group (pure).

Follows moby/sys/user GetExecUser, which dockerd uses: "" is root, a name must exist in
passwd, a numeric uid need not; an explicit group replaces the primary gid, otherwise the
user's supplementary groups are the /etc/group entries that list the user's name.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.errors import InvalidParameter

_MAX_ID = 2**31 - 1


@dataclass(frozen=True, slots=True)
class _Passwd:
    name: str
    uid: int
    gid: int


@dataclass(frozen=True, slots=True)
class _Group:
    name: str
    gid: int
    members: tuple[str, ...]


def _int_or_none(text: str) -> int | None:
    text = text.strip()
    if text.isdigit():
        return int(text)
    return None


def _lines(text: str | None):
    for line in (text or "").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            yield line.split(":")


def _parse_passwd(text: str | None) -> list[_Passwd]:
    out = []
    for parts in _lines(text):
        parts += [""] * (7 - len(parts))
        # Like moby's parser, an unparsable id reads as 0 rather than failing the whole file.
        out.append(_Passwd(parts[0], _int_or_none(parts[2]) or 0, _int_or_none(parts[3]) or 0))
    return out


def _parse_group(text: str | None) -> list[_Group]:
    out = []
    for parts in _lines(text):
        parts += [""] * (4 - len(parts))
        members = tuple(m.strip() for m in parts[3].split(",") if m.strip())
        out.append(_Group(parts[0], _int_or_none(parts[2]) or 0, members))
    return out


def _check_range(value: int) -> int:
    if value < 0 or value > _MAX_ID:
        raise InvalidParameter(f"uids and gids must be in range 0-{_MAX_ID}")
    return value


def resolve_user(user: str, passwd_text: str | None,
                 group_text: str | None) -> tuple[int, int, tuple[int, ...]]:
    """(uid, gid, additional_gids) for Docker's --user value: "", name, uid, name:group, uid:gid.

    Raises InvalidParameter with dockerd's message when a name is not found.
    """
    user_arg, _, group_arg = (user or "").partition(":")
    uid_num = _int_or_none(user_arg)
    gid_num = _int_or_none(group_arg)

    uid, gid, name = 0, 0, ""
    users = _parse_passwd(passwd_text)
    if user_arg == "":
        match = [u for u in users if u.uid == 0]
    elif uid_num is not None:
        match = [u for u in users if u.uid == uid_num]
    else:
        match = [u for u in users if u.name == user_arg]
    if match:
        uid, gid, name = match[0].uid, match[0].gid, match[0].name
    elif user_arg != "":
        if uid_num is None:
            raise InvalidParameter(
                f"unable to find user {user_arg}: no matching entries in passwd file")
        uid = _check_range(uid_num)

    supplementary: tuple[int, ...] = ()
    if group_arg or name:
        groups = _parse_group(group_text)
        if group_arg == "":
            # No explicit group: the user keeps its primary gid and gains its memberships.
            supplementary = tuple(g.gid for g in groups if name in g.members)
        else:
            if gid_num is not None:
                found = [g for g in groups if g.gid == gid_num]
            else:
                found = [g for g in groups if g.name == group_arg]
            if found:
                gid = found[0].gid
            elif gid_num is None:
                raise InvalidParameter(
                    f"unable to find group {group_arg}: no matching entries in group file")
            else:
                gid = _check_range(gid_num)
    return uid, gid, supplementary
