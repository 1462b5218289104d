"""``modelcache.yaml``: a declared set of models and the policy for one cache root. Pure.

    models:
      - repo: Qwen/Qwen3-0.6B          # required
        revision: main                 # branch, tag or commit (default main); pinned to its commit
        commit: 0123…(40 hex)          # optional: expect exactly this commit (no upstream lookup)
        profile: full                  # full | tokenizer
        include: ["*.safetensors", "*.json"]
        exclude: ["original/*"]
        name: qwen3-small              # optional: registered as a served model name
        namespace: default
        kinds: [chat]
        engine: vllm
    policy:
      max_size: 500GiB                 # GC after sync: keep the cache under this
      max_age: 30d                     # … remove unpinned revisions unused this long
      keep_last: 1                     # … keep the newest N revisions of each repo
    endpoint: https://huggingface.co   # or a mirror (serve --upstream)

Every error names the file and line (``modelcache.yaml:7: …``). ``schema.json`` beside this
file is the same contract as a JSON Schema, for editors.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidInput
from ..profiles import validate_profile
from ..settings import parse_duration, parse_size
from ..validation import is_commit, validate_repo_id, validate_repo_type, validate_revision

__all__ = ["ModelSpec", "Policy", "SyncSpec", "load_spec", "parse_spec"]

_MODEL_KEYS = {"repo", "revision", "commit", "profile", "include", "exclude", "name", "namespace", "kinds",
               "engine", "repo_type"}
_POLICY_KEYS = {"max_size", "max_age", "keep_last"}
_TOP_KEYS = {"apiVersion", "models", "policy", "endpoint"}
MAX_SPEC_BYTES = 1 << 20


@dataclass(frozen=True)
class ModelSpec:
    """One model as declared in ``modelcache.yaml``, validated.

    ``commit``: the declared commit, or the revision when that is a commit id (no upstream lookup then).
    """

    repo: str
    revision: str = "main"
    commit: str | None = None
    profile: str = "full"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    name: str | None = None
    namespace: str = "default"
    kinds: tuple[str, ...] = ()
    engine: str = "other"
    repo_type: str = "model"
    line: int = 0
    """Where it is declared (for messages)."""

    @property
    def key(self) -> tuple[str, str, str]:
        """``(repo_type, repo, revision)``: a repo and revision may be declared only once."""
        return (self.repo_type, self.repo, self.revision)

    def label(self) -> str:
        """``repo@revision``, plus the served name in parentheses if there is one (for messages)."""
        return f"{self.repo}@{self.revision}" + (f" ({self.name})" if self.name else "")


@dataclass(frozen=True)
class Policy:
    """The GC policy applied after a sync: ``max_size`` in bytes, ``max_age`` in seconds, ``keep_last`` per repo."""

    max_size: int | None = None
    max_age: float | None = None
    keep_last: int | None = None

    @property
    def empty(self) -> bool:
        """True when no limit is set (sync then plans no GC)."""
        return self.max_size is None and self.max_age is None and self.keep_last is None


@dataclass(frozen=True)
class SyncSpec:
    """A validated ``modelcache.yaml``: its models, GC policy, endpoint, and ``source`` (the name in messages)."""

    models: tuple[ModelSpec, ...]
    policy: Policy = field(default_factory=Policy)
    endpoint: str | None = None
    source: str = "modelcache.yaml"


def load_spec(path: Path) -> SyncSpec:
    """Read and validate ``path`` (a regular file of at most 1 MiB)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}", "give the path of a modelcache.yaml") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise InvalidInput(f"{path} is larger than 1 MiB", "is this the right file?")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{path} is not UTF-8 text", "save it as UTF-8") from None
    return parse_spec(text, source=str(path))


def parse_spec(text: str, source: str = "modelcache.yaml") -> SyncSpec:
    """Parse and validate the text of a ``modelcache.yaml``; InvalidInput naming ``source`` and the line."""
    import yaml

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise InvalidInput(f"{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})",
                           "check the indentation and quoting") from None
    except RecursionError:  # thousands of nested [ or - : a crafted file, never a traceback
        raise InvalidInput(f"{source}: nested too deeply", "a modelcache.yaml is a few levels deep") from None
    if node is None:
        raise InvalidInput(f"{source}: the file is empty", "declare at least `models:`")
    return _Reader(source).spec(node)


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, node: Any, message: str, hint: str) -> InvalidInput:
        return InvalidInput(f"{self.source}:{node.start_mark.line + 1}: {message}", hint)

    def mapping(self, node: Any, what: str, allowed: set[str]) -> dict[str, Any]:
        import yaml

        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{what} must be a mapping", "write `key: value` lines")
        out: dict[str, Any] = {}
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else None
            if key not in allowed:
                raise self.fail(k, f"unknown key {key!r} in {what}", f"allowed: {', '.join(sorted(allowed))}")
            if key in out:
                raise self.fail(k, f"{key!r} is given twice in {what}", "keep one")
            out[key] = v
        return out

    def scalar(self, node: Any, what: str) -> str:
        import yaml

        if not isinstance(node, yaml.ScalarNode) or node.tag == "tag:yaml.org,2002:null":
            raise self.fail(node, f"{what} must be a single value", "write e.g. `revision: main`")
        return str(node.value)

    def strings(self, node: Any, what: str) -> tuple[str, ...]:
        import yaml

        if isinstance(node, yaml.ScalarNode):
            return (self.scalar(node, what),)
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, f"{what} must be a list of strings", 'write e.g. ["*.json", "*.safetensors"]')
        return tuple(self.scalar(item, what) for item in node.value)

    def checked(self, node: Any, fn: Any, value: Any) -> Any:
        try:
            return fn(value)
        except InvalidInput as exc:
            raise self.fail(node, exc.message, exc.hint) from None

    def spec(self, root: Any) -> SyncSpec:
        import yaml

        top = self.mapping(root, "the file", _TOP_KEYS)
        if "apiVersion" in top and self.scalar(top["apiVersion"], "apiVersion") != "modelcache.io/v1":
            raise self.fail(top["apiVersion"], "unsupported apiVersion", "use apiVersion: modelcache.io/v1")
        models_node = top.get("models")
        if models_node is None or not isinstance(models_node, yaml.SequenceNode):
            raise self.fail(models_node or root, "`models:` must be a list", "declare `models:` with `- repo: org/name` items")
        models = tuple(self.model(n) for n in models_node.value)
        seen: dict[tuple[str, str, str], ModelSpec] = {}
        names: dict[tuple[str, str], ModelSpec] = {}
        for m in models:
            if m.key in seen:
                raise InvalidInput(f"{self.source}:{m.line}: {m.repo}@{m.revision} is declared twice "
                                   f"(first at line {seen[m.key].line})", "keep one entry per repo and revision")
            seen[m.key] = m
            if m.name:
                if (m.namespace, m.name) in names:
                    raise InvalidInput(f"{self.source}:{m.line}: the name {m.name!r} is declared twice",
                                       "one served name per model")
                names[(m.namespace, m.name)] = m
        policy = self.policy(top["policy"]) if "policy" in top else Policy()
        endpoint = None
        if "endpoint" in top:
            endpoint = self.scalar(top["endpoint"], "endpoint").rstrip("/")
            if not endpoint.startswith(("http://", "https://")):
                raise self.fail(top["endpoint"], f"invalid endpoint {endpoint!r}", "give a URL such as https://huggingface.co")
        return SyncSpec(models, policy, endpoint, self.source)

    def model(self, node: Any) -> ModelSpec:
        m = self.mapping(node, "a model", _MODEL_KEYS)
        if "repo" not in m:
            raise self.fail(node, "a model without `repo:`", "add e.g. `repo: Qwen/Qwen3-0.6B`")
        kw: dict[str, Any] = {"line": node.start_mark.line + 1}
        kw["repo"] = self.checked(m["repo"], validate_repo_id, self.scalar(m["repo"], "repo"))
        if "repo_type" in m:
            kw["repo_type"] = self.checked(m["repo_type"], validate_repo_type, self.scalar(m["repo_type"], "repo_type"))
        if "revision" in m:
            kw["revision"] = self.checked(m["revision"], validate_revision, self.scalar(m["revision"], "revision"))
        if "commit" in m:
            commit = self.scalar(m["commit"], "commit").lower()
            if not is_commit(commit):
                raise self.fail(m["commit"], f"commit {commit!r} is not a 40-hex commit id", "copy it from `modelcache ls`")
            if is_commit(kw.get("revision", "")) and kw["revision"] != commit:
                raise self.fail(m["commit"], "revision and commit name different commits", "give one of them")
            kw["commit"] = commit
        if "profile" in m:
            kw["profile"] = self.checked(m["profile"], validate_profile, self.scalar(m["profile"], "profile"))
        for key in ("include", "exclude", "kinds"):
            if key in m:
                kw[key] = self.strings(m[key], key)
        for pattern in (*kw.get("include", ()), *kw.get("exclude", ())):
            if not pattern or pattern.startswith("/") or "\x00" in pattern:
                raise self.fail(node, f"invalid pattern {pattern!r}", "patterns are relative globs such as *.json")
            fnmatch.translate(pattern)
        for key in ("name", "namespace", "engine"):
            if key in m:
                kw[key] = self.scalar(m[key], key)
        if is_commit(kw.get("revision", "")) and "commit" not in kw:
            kw["commit"] = kw["revision"]
        if kw.get("name"):
            from ..models.names import validate_engine, validate_kinds, validate_name, validate_namespace

            self.checked(m["name"], validate_name, kw["name"])
            if "namespace" in kw:
                self.checked(m["namespace"], validate_namespace, kw["namespace"])
            if "kinds" in kw:
                kw["kinds"] = tuple(self.checked(m["kinds"], validate_kinds, kw["kinds"]))
            if "engine" in kw:
                kw["engine"] = self.checked(m["engine"], validate_engine, kw["engine"])
        elif any(k in kw for k in ("namespace", "kinds", "engine")):
            raise self.fail(node, "namespace/kinds/engine describe a served name", "add `name:` or remove them")
        return ModelSpec(**kw)

    def policy(self, node: Any) -> Policy:
        p = self.mapping(node, "policy", _POLICY_KEYS)
        kw: dict[str, Any] = {}
        if "max_size" in p:
            kw["max_size"] = self.checked(p["max_size"], lambda v: _positive(parse_size(v, "max_size"), "max_size"),
                                          self.scalar(p["max_size"], "max_size"))
        if "max_age" in p:
            kw["max_age"] = self.checked(p["max_age"], lambda v: parse_duration(v, "max_age"),
                                         self.scalar(p["max_age"], "max_age"))
        if "keep_last" in p:
            text = self.scalar(p["keep_last"], "keep_last")
            if not text.isdigit():
                raise self.fail(p["keep_last"], f"keep_last {text!r} is not a whole number", "give 0 or more")
            kw["keep_last"] = int(text)
        return Policy(**kw)


def _positive(value: int, what: str) -> int:
    if value <= 0:
        raise InvalidInput(f"invalid {what} {value}", "give a positive size such as 500GiB")
    return value


def spec_to_dict(spec: SyncSpec) -> Mapping[str, object]:
    return {"models": [m.label() for m in spec.models], "policy": spec.policy.__dict__, "endpoint": spec.endpoint}
