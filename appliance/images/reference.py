"""Image references and image IDs, parsed the way distribution/reference and dockerd do.

Pure: no I/O. Every rejection is an InvalidParameter whose message is the one dockerd
sends, e.g. ``invalid reference format: repository name (library/Busybox) must be lowercase``.

Grammar (distribution/reference)::

    reference        := name [ ":" tag ] [ "@" digest ]
    name             := [domain '/'] remote-name
    domain           := host [':' port-number]
    remote-name      := path-component ['/' path-component]*
    path-component   := [a-z0-9]+ (separator [a-z0-9]+)*     separator := [._] | __ | -+
    tag              := [\\w][\\w.-]{0,127}
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from appliance.errors import InvalidParameter, NotFound

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

# The regular expressions below are distribution/reference's regexp.go, transcribed.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_OPTIONAL_PORT = r"(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9A-Fa-f]{32,}"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_NAME = _DOMAIN_COMPONENT + r"(?:\." + _DOMAIN_COMPONENT + r")*"
_HOST = r"(?:" + _DOMAIN_NAME + "|" + _IPV6 + ")"
_DOMAIN_AND_PORT = _HOST + _OPTIONAL_PORT
_PATH_COMPONENT = _ALNUM + r"(?:" + _SEPARATOR + _ALNUM + r")*"
_REMOTE_NAME = _PATH_COMPONENT + r"(?:/" + _PATH_COMPONENT + r")*"
_NAME = r"(?:" + _DOMAIN_AND_PORT + r"/)?" + _REMOTE_NAME

_REFERENCE_RE = re.compile(
    r"(" + _NAME + r")(?::(" + _TAG + r"))?(?:@(" + _DIGEST + r"))?", re.ASCII
)
_ANCHORED_NAME_RE = re.compile(
    r"(?:(" + _DOMAIN_AND_PORT + r")/)?(" + _REMOTE_NAME + r")", re.ASCII
)
_TAG_RE = re.compile(_TAG, re.ASCII)
_DIGEST_RE = re.compile(_DIGEST, re.ASCII)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")
_HEX_PREFIX_RE = re.compile(r"[a-f0-9]{1,64}")

# go-digest: the algorithms dockerd registers and their hex lengths.
_DIGEST_HEX_LEN = {"sha256": 64, "sha384": 96, "sha512": 128}

# Messages, verbatim from distribution/reference and go-digest.
ERR_INVALID_FORMAT = "invalid reference format"
ERR_TAG_INVALID_FORMAT = "invalid tag format"
ERR_NAME_CONTAINS_UPPERCASE = "repository name must be lowercase"
ERR_NAME_EMPTY = "repository name must have at least one component"
ERR_NAME_TOO_LONG = f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
ERR_DIGEST_INVALID_FORMAT = "invalid checksum digest format"
ERR_DIGEST_INVALID_LENGTH = "invalid checksum digest length"
ERR_DIGEST_UNSUPPORTED = "unsupported digest algorithm"


@dataclass(frozen=True, slots=True)
class Reference:
    """A named reference, always normalized: ``domain`` is set ("docker.io" for Hub names)
    and Hub official images carry the ``library/`` prefix in ``path``."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """The full repository name, e.g. ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def familiar_name(self) -> str:
        """The repository name as the docker CLI shows it, e.g. ``busybox``."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        if self.path.startswith(OFFICIAL_REPO_PREFIX):
            rest = self.path[len(OFFICIAL_REPO_PREFIX):]
            if "/" not in rest:
                return rest
        return self.path

    @property
    def is_name_only(self) -> bool:
        return self.tag is None and self.digest is None

    def familiar(self) -> str:
        """FamiliarString: ``busybox:latest``, ``localhost:5000/a/b:t``, ``x@sha256:…``."""
        return self.familiar_name + self._suffix()

    def with_tag(self, tag: str) -> Reference:
        """WithTag: replace the tag (keeping any digest)."""
        if not _TAG_RE.fullmatch(tag):
            raise InvalidParameter(ERR_TAG_INVALID_FORMAT)
        return replace(self, tag=tag)

    def with_default_tag(self) -> Reference:
        """TagNameOnly: add ``latest`` to a bare name; any other reference is returned as is."""
        return replace(self, tag=DEFAULT_TAG) if self.is_name_only else self

    def _suffix(self) -> str:
        out = ""
        if self.tag is not None:
            out += ":" + self.tag
        if self.digest is not None:
            out += "@" + self.digest
        return out

    def __str__(self) -> str:
        return self.name + self._suffix()


def validate_digest(value: str) -> str:
    """go-digest's Parse: return ``value`` if it is a valid digest, else raise its error."""
    i = value.find(":")
    if i <= 0 or i + 1 == len(value):
        raise InvalidParameter(ERR_DIGEST_INVALID_FORMAT)
    algorithm, encoded = value[:i], value[i + 1:]
    want = _DIGEST_HEX_LEN.get(algorithm)
    if want is None:
        if not _DIGEST_RE.fullmatch(value):
            raise InvalidParameter(ERR_DIGEST_INVALID_FORMAT)
        raise InvalidParameter(ERR_DIGEST_UNSUPPORTED)
    if len(encoded) != want:
        raise InvalidParameter(ERR_DIGEST_INVALID_LENGTH)
    if not re.fullmatch(r"[a-f0-9]+", encoded):
        raise InvalidParameter(ERR_DIGEST_INVALID_FORMAT)
    return value


def _is_digest(value: str) -> bool:
    try:
        validate_digest(value)
    except InvalidParameter:
        return False
    return True


def parse(s: str) -> Reference:
    """distribution/reference Parse: the string as written, without normalization.

    A name without a domain gets ``domain=""``. Digest-only strings are not references
    here (use parse_any_reference); they fail with ``invalid reference format``.
    """
    if s == "":
        raise InvalidParameter(ERR_NAME_EMPTY)
    m = _REFERENCE_RE.fullmatch(s)
    if m is None:
        lowered = s.lower()
        if lowered != s and _REFERENCE_RE.fullmatch(lowered):
            raise InvalidParameter(ERR_NAME_CONTAINS_UPPERCASE)
        raise InvalidParameter(ERR_INVALID_FORMAT)
    name, tag, digest = m.group(1), m.group(2), m.group(3)
    nm = _ANCHORED_NAME_RE.fullmatch(name)
    if nm is not None:
        domain, path = nm.group(1) or "", nm.group(2)
    else:  # pragma: no cover - the reference regexp implies the name regexp
        domain, path = "", name
    if len(path) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidParameter(ERR_NAME_TOO_LONG)
    if digest is not None:
        validate_digest(digest)
    return Reference(domain=domain, path=path, tag=tag, digest=digest)


def _split_docker_domain(name: str) -> tuple[str, str]:
    maybe_domain, sep, maybe_remote = name.partition("/")
    if not sep:
        return DEFAULT_DOMAIN, OFFICIAL_REPO_PREFIX + name
    if maybe_domain == "localhost":
        domain, remote = maybe_domain, maybe_remote
    elif maybe_domain == LEGACY_DEFAULT_DOMAIN:
        domain, remote = DEFAULT_DOMAIN, maybe_remote
    elif "." in maybe_domain or ":" in maybe_domain:
        domain, remote = maybe_domain, maybe_remote
    elif maybe_domain.lower() != maybe_domain:
        domain, remote = maybe_domain, maybe_remote
    else:
        domain, remote = DEFAULT_DOMAIN, name
    if domain == DEFAULT_DOMAIN and "/" not in remote:
        remote = OFFICIAL_REPO_PREFIX + remote
    return domain, remote


def parse_normalized_named(s: str) -> Reference:
    """ParseNormalizedNamed: "busybox" -> docker.io/library/busybox (no tag added)."""
    if _IDENTIFIER_RE.fullmatch(s):
        raise InvalidParameter(
            f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
        )
    domain, remainder = _split_docker_domain(s)
    colon = remainder.find(":")
    remote = remainder[:colon] if colon > -1 else remainder
    if remote.lower() != remote:
        raise InvalidParameter(
            f"invalid reference format: repository name ({remote}) must be lowercase"
        )
    return parse(domain + "/" + remainder)


def parse_any_reference(s: str) -> Reference | str:
    """ParseAnyReference: a 64-hex identifier or a full digest gives the digest string
    ("sha256:<hex>"); anything else must be a (normalized) named reference."""
    if _IDENTIFIER_RE.fullmatch(s):
        return "sha256:" + s
    if _is_digest(s):
        return s
    return parse_normalized_named(s)


def parse_tagged(s: str) -> Reference:
    """A RepoTags entry from a docker-archive manifest: must name a tag (dockerd's load)."""
    ref = parse_normalized_named(s)
    if ref.tag is None:
        raise InvalidParameter(f"invalid tag {_go_quote(s)}")
    return ref


def repo_tag_reference(repo: str, tag: str = "") -> Reference | None:
    """dockerd's RepoTagReference for the ``repo``/``tag`` form values of import and tag.

    Returns None when ``repo`` is empty; otherwise a tagged reference (``latest`` by
    default; an explicit ``tag`` replaces one written in ``repo``).
    """
    if repo == "":
        return None
    ref = parse_normalized_named(repo)
    if ref.digest is not None:
        raise InvalidParameter("cannot import digest reference")
    if tag != "":
        return ref.with_tag(tag)
    return ref.with_default_tag()


def tag_target(repo: str, tag: str = "") -> Reference:
    """The reference ``POST /images/{name}/tag?repo=&tag=`` creates, checked as dockerd does."""
    ref = repo_tag_reference(repo, tag)
    if ref is None:
        # dockerd wraps a nil error here; the CLI always sends repo.
        raise InvalidParameter("repository name must have at least one component")
    if ref.familiar_name == "sha256":
        raise InvalidParameter("refusing to create an ambiguous tag using digest algorithm as name")
    return ref


def familiar_repo_tag(s: str) -> str:
    """``docker.io/library/busybox`` -> ``busybox:latest``: how RepoTags are shown."""
    return parse_normalized_named(s).with_default_tag().familiar()


# ---------------------------------------------------------------------------------------
# Image IDs


def is_full_id(s: str) -> bool:
    """True for "sha256:<64 hex>"."""
    return s.startswith("sha256:") and _IDENTIFIER_RE.fullmatch(s[7:]) is not None


def full_id(s: str) -> str | None:
    """"sha256:<64hex>" or "<64hex>" -> "sha256:<64hex>"; anything else -> None."""
    if _IDENTIFIER_RE.fullmatch(s):
        return "sha256:" + s
    if is_full_id(s):
        return s
    return None


def short_id(image_id: str) -> str:
    """The 12-hex form ``docker images`` prints."""
    hex_part = image_id.split(":", 1)[1] if ":" in image_id else image_id
    return hex_part[:12]


def id_prefix(term: str) -> str | None:
    """The hex prefix ``term`` denotes as an ID search, or None if it cannot be one.

    Accepts "<hex prefix>" and "sha256:<hex prefix>" (as dockerd's digest set does).
    """
    hex_part = term[7:] if term.startswith("sha256:") else term
    return hex_part if _HEX_PREFIX_RE.fullmatch(hex_part) else None


def match_id_prefix(term: str, ids: Iterable[str]) -> list[str]:
    """Every full id in ``ids`` that ``term`` (hex prefix, optionally "sha256:") matches."""
    prefix = id_prefix(term)
    if prefix is None:
        return []
    want = "sha256:" + prefix
    return sorted({i for i in ids if i.startswith(want)})


def resolve_id_prefix(term: str, ids: Iterable[str]) -> str | None:
    """The one id ``term`` matches; None when none or several do (dockerd answers both
    with "No such image")."""
    found = match_id_prefix(term, ids)
    return found[0] if len(found) == 1 else None


def no_such_image(term: str) -> str:
    """dockerd's ErrImageDoesNotExist message: names get their default tag."""
    try:
        ref = parse_any_reference(term)
    except InvalidParameter:
        return f"No such image: {term}"
    if isinstance(ref, str):
        return f"No such image: {ref}"
    return f"No such image: {ref.with_default_tag().familiar()}"


def resolve_image(
    term: str,
    lookup_ref: Callable[[Reference], str | None],
    ids: Callable[[], Iterable[str]],
) -> str:
    """Find the image ``term`` names, in dockerd's order, and return its full id.

    1. "sha256:<64hex>" or "<64hex>": that id, if ``ids()`` has it.
    2. A name: ``lookup_ref(ref)`` with the default tag added (the engine's tag table,
       keyed by ``str(ref)``, e.g. "docker.io/library/busybox:latest").
    3. Otherwise a unique id prefix ("a1b2c3", "sha256:a1b2").
    Raises InvalidParameter for a malformed reference, NotFound otherwise.
    """
    ref = parse_any_reference(term)
    if isinstance(ref, str):
        if ref in set(ids()):
            return ref
        raise NotFound(no_such_image(term))
    found = lookup_ref(ref.with_default_tag())
    if found is not None:
        return found
    hit = resolve_id_prefix(term, ids())
    if hit is not None:
        return hit
    raise NotFound(no_such_image(term))


def _go_quote(s: str) -> str:
    """Go's %q for the plain strings we quote in messages."""
    out = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{out}"'
