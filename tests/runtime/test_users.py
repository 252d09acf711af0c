"""Docker's --user resolution (moby/sys/user GetExecUser semantics)."""

import pytest

from appliance.errors import InvalidParameter
from appliance.runtime.users import resolve_user

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
# a comment
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/:/bin/false
"""
GROUP = """root:x:0:
wheel:x:10:root,app
app:x:1000:
audio:x:29:app
staff:x:50:
nogroup:x:65534:
"""


@pytest.mark.parametrize("user,expected", [
    ("", (0, 0, (10,))),                     # root, plus its memberships
    ("root", (0, 0, (10,))),
    ("app", (1000, 1000, (10, 29))),
    ("1000", (1000, 1000, (10, 29))),        # numeric found in passwd: its gid and groups
    ("4242", (4242, 0, ())),                 # numeric, no entry: gid 0, no groups
    ("app:staff", (1000, 50, ())),           # explicit group: no supplementary groups
    ("app:50", (1000, 50, ())),
    ("app:4343", (1000, 4343, ())),          # numeric group need not exist
    ("4242:4343", (4242, 4343, ())),
    ("0:0", (0, 0, ())),
    ("nobody", (65534, 65534, ())),
])
def test_resolve(user, expected):
    assert resolve_user(user, PASSWD, GROUP) == expected


def test_unknown_name_has_dockers_message():
    with pytest.raises(InvalidParameter) as e:
        resolve_user("ghost", PASSWD, GROUP)
    assert e.value.message == "unable to find user ghost: no matching entries in passwd file"


def test_unknown_group_name():
    with pytest.raises(InvalidParameter, match="unable to find group nogrp: no matching entries in group file"):
        resolve_user("app:nogrp", PASSWD, GROUP)


def test_no_passwd_file():
    assert resolve_user("", None, None) == (0, 0, ())
    assert resolve_user("123:456", None, None) == (123, 456, ())
    with pytest.raises(InvalidParameter, match="unable to find user app"):
        resolve_user("app", None, None)


def test_out_of_range():
    with pytest.raises(InvalidParameter, match="range"):
        resolve_user("4294967296", None, None)
