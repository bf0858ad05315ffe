"""Keypoint sets as data.

Each skeleton is a YAML file (``data/<name>.yaml``): joint names, an optional kinematic tree
(``parents``), a bone/limb list (``bones``, by joint names) and optional OKS ``sigmas``.
Left/right flip pairs are listed in ``flip_pairs`` or, when that field is absent, come from the
names: every joint whose name contains ``left`` (or ``Left``) is paired with the joint whose name has
``right`` (``Right``) in its place. Any other top-level keys are kept in ``Skeleton.meta``. Mappings between skeletons are YAML files too
(``mappings/<source>_to_<target>.yaml``). A user's own skeleton is a YAML file of the same form,
loaded with :func:`load_skeleton` or :func:`get_skeleton` given its path.

Joint indices are never hard-coded outside this package: ask a skeleton with ``skeleton.index(name)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml

from posekit.errors import PosekitError

_DATA = Path(__file__).parent / "data"
_MAPPINGS = Path(__file__).parent / "mappings"


@dataclass(frozen=True, eq=False)
class Skeleton:
    """A named keypoint set. Immutable; compare skeletons by ``name``."""

    name: str
    joints: tuple[str, ...]
    bones: tuple[tuple[int, int], ...] = ()
    parents: tuple[int, ...] | None = None
    sigmas: np.ndarray | None = None
    description: str = ""
    explicit_flip_pairs: tuple[tuple[int, int], ...] | None = None
    meta: dict = field(default_factory=dict, repr=False)
    _index: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if len(set(self.joints)) != len(self.joints):
            raise PosekitError(f"skeleton {self.name!r}: joint names must be unique")
        object.__setattr__(self, "_index", {n: i for i, n in enumerate(self.joints)})
        if self.sigmas is not None and len(self.sigmas) != len(self.joints):
            raise PosekitError(
                f"skeleton {self.name!r}: {len(self.sigmas)} sigmas for {len(self.joints)} joints")

    def __len__(self) -> int:
        return len(self.joints)

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    def index(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise PosekitError(f"skeleton {self.name!r} has no joint {name!r}") from None

    def indices(self, names) -> np.ndarray:
        return np.array([self.index(n) for n in names], dtype=int)

    @property
    def flip_pairs(self) -> tuple[tuple[int, int], ...]:
        """(left, right) index pairs: the YAML's ``flip_pairs``, else swapping left/right in names."""
        if self.explicit_flip_pairs is not None:
            return self.explicit_flip_pairs
        pairs = []
        for i, name in enumerate(self.joints):
            for left, right in (("left", "right"), ("Left", "Right")):
                if left in name:
                    j = self._index.get(name.replace(left, right))
                    if j is not None:
                        pairs.append((i, j))
                    break
        return tuple(pairs)

    @property
    def sides(self) -> np.ndarray:
        """Per joint: +1 if its name says left, -1 if it says right, 0 for the centre line."""
        return np.array([1 if "left" in n.lower() else -1 if "right" in n.lower() else 0 for n in self.joints])

    @property
    def flip_indices(self) -> np.ndarray:
        """Permutation that maps a keypoint array to its mirror image's joint order."""
        perm = np.arange(len(self.joints))
        for i, j in self.flip_pairs:
            perm[i], perm[j] = j, i
        return perm

    @property
    def bone_array(self) -> np.ndarray:
        """Bones as an (B, 2) int array of joint indices (empty (0, 2) if none)."""
        return np.array(self.bones, dtype=int).reshape(-1, 2)

    def to_dict(self) -> dict:
        out = {"name": self.name, "description": self.description, "joints": list(self.joints),
               "bones": [[self.joints[a], self.joints[b]] for a, b in self.bones]}
        if self.parents is not None:
            out["parents"] = [None if p < 0 else self.joints[p] for p in self.parents]
        if self.sigmas is not None:
            out["sigmas"] = [float(s) for s in self.sigmas]
        if self.explicit_flip_pairs is not None:
            out["flip_pairs"] = [[self.joints[a], self.joints[b]] for a, b in self.explicit_flip_pairs]
        return {**self.meta, **out}


def skeleton_from_dict(spec: dict, source: str = "skeleton") -> Skeleton:
    """Build a skeleton from its YAML form, with errors that name ``source`` and the field."""
    if not isinstance(spec, dict):
        raise PosekitError(f"{source}: expected a mapping with 'name' and 'joints'")
    name, joints = spec.get("name"), spec.get("joints")
    if not isinstance(name, str) or not name:
        raise PosekitError(f"{source}: 'name' must be a non-empty string")
    if not isinstance(joints, list) or not joints or not all(isinstance(j, str) for j in joints):
        raise PosekitError(f"{source}: 'joints' must be a non-empty list of names")
    index = {n: i for i, n in enumerate(joints)}

    def lookup(jname, fieldname):
        if jname not in index:
            raise PosekitError(f"{source}: '{fieldname}' names unknown joint {jname!r}")
        return index[jname]

    def pairs(fieldname):
        out = []
        for b in spec.get(fieldname) or []:
            if not isinstance(b, list) or len(b) != 2:
                raise PosekitError(f"{source}: each entry of '{fieldname}' must be a pair of joint names")
            out.append((lookup(b[0], fieldname), lookup(b[1], fieldname)))
        return out

    bones = pairs("bones")
    flips = tuple(pairs("flip_pairs")) if "flip_pairs" in spec else None
    parents = None
    if spec.get("parents") is not None:
        plist = spec["parents"]
        if not isinstance(plist, list) or len(plist) != len(joints):
            raise PosekitError(f"{source}: 'parents' must list one parent (or null) per joint")
        parents = tuple(-1 if p is None else lookup(p, "parents") for p in plist)
        _check_tree(parents, source)
        if not bones:
            bones = [(p, c) for c, p in enumerate(parents) if p >= 0]
    sigmas = None
    if spec.get("sigmas") is not None:
        try:
            sigmas = np.asarray(spec["sigmas"], dtype=float)
        except (TypeError, ValueError):
            raise PosekitError(f"{source}: 'sigmas' must be numbers") from None
        if sigmas.ndim != 1 or not np.all(np.isfinite(sigmas)) or np.any(sigmas <= 0):
            raise PosekitError(f"{source}: 'sigmas' must be positive finite numbers")
    known = {"name", "joints", "bones", "parents", "sigmas", "description", "flip_pairs"}
    return Skeleton(name=name, joints=tuple(joints), bones=tuple(bones), parents=parents,
                    sigmas=sigmas, description=str(spec.get("description", "")).strip(),
                    explicit_flip_pairs=flips, meta={k: v for k, v in spec.items() if k not in known})


def _check_tree(parents, source):
    roots = [i for i, p in enumerate(parents) if p < 0]
    if len(roots) != 1:
        raise PosekitError(f"{source}: 'parents' must have exactly one root (null), found {len(roots)}")
    for start in range(len(parents)):
        seen, j = set(), start
        while j >= 0:
            if j in seen:
                raise PosekitError(f"{source}: 'parents' contains a cycle")
            seen.add(j)
            j = parents[j]


def load_skeleton(path: str | Path) -> Skeleton:
    """Load a skeleton YAML file (a user's custom keypoint set, for example)."""
    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise PosekitError(f"{path}: no such skeleton file") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PosekitError(f"{path}: not a readable YAML skeleton ({type(exc).__name__})") from None
    return skeleton_from_dict(spec, str(path))


_REGISTERED: dict[str, Skeleton] = {}


def register_skeleton(skeleton: Skeleton) -> Skeleton:
    """Make a custom skeleton available by name to every posekit function."""
    _REGISTERED[skeleton.name] = skeleton
    return skeleton


@lru_cache(maxsize=None)
def _builtin(name: str) -> Skeleton:
    return load_skeleton(_DATA / f"{name}.yaml")


def list_skeletons() -> list[str]:
    return sorted({p.stem for p in _DATA.glob("*.yaml")} | set(_REGISTERED))


def get_skeleton(skeleton: str | Path | Skeleton) -> Skeleton:
    """A skeleton by name (built-in or registered), by YAML path, or passed through."""
    if isinstance(skeleton, Skeleton):
        return skeleton
    key = str(skeleton)
    if key in _REGISTERED:
        return _REGISTERED[key]
    if (_DATA / f"{key}.yaml").exists():
        return _builtin(key)
    if key.endswith((".yaml", ".yml")):
        return load_skeleton(key)
    raise PosekitError(f"unknown skeleton {key!r}; known: {', '.join(list_skeletons())}")


@dataclass(frozen=True)
class Mapping:
    """How each target joint is made from source joints (the mean of one or more)."""

    source: str
    target: str
    sources: tuple[tuple[int, ...], ...]  # per target joint; () = no counterpart

    @property
    def matrix(self) -> np.ndarray:
        """(K_target, K_source) averaging matrix."""
        src = get_skeleton(self.source)
        m = np.zeros((len(self.sources), len(src)))
        for t, idx in enumerate(self.sources):
            if idx:
                m[t, list(idx)] = 1.0 / len(idx)
        return m


def mapping_from_dict(spec: dict, origin: str = "mapping") -> Mapping:
    try:
        src, dst, table = get_skeleton(spec["source"]), get_skeleton(spec["target"]), spec["joints"]
    except (KeyError, TypeError):
        raise PosekitError(f"{origin}: a mapping needs 'source', 'target' and 'joints'") from None
    sources = []
    for tname in dst.joints:
        entry = table.get(tname)
        if entry is None:
            sources.append(())
            continue
        names = [entry] if isinstance(entry, str) else list(entry)
        sources.append(tuple(int(src.index(n)) for n in names))
    unknown = set(table) - set(dst.joints)
    if unknown:
        raise PosekitError(f"{origin}: target {dst.name!r} has no joints {sorted(unknown)}")
    return Mapping(src.name, dst.name, tuple(sources))


@lru_cache(maxsize=None)
def _builtin_mapping(source: str, target: str) -> Mapping | None:
    path = _MAPPINGS / f"{source}_to_{target}.yaml"
    if not path.exists():
        return None
    return mapping_from_dict(yaml.safe_load(path.read_text()), str(path))


def list_mappings() -> list[tuple[str, str]]:
    return sorted(tuple(p.stem.split("_to_")) for p in _MAPPINGS.glob("*_to_*.yaml"))


def get_mapping(source, target) -> Mapping:
    s, t = get_skeleton(source).name, get_skeleton(target).name
    m = _builtin_mapping(s, t)
    if m is None:
        raise PosekitError(f"no mapping from {s!r} to {t!r}; known: "
                           + ", ".join(f"{a}->{b}" for a, b in list_mappings()))
    return m


def convert_keypoints(keypoints, scores, source, target, mapping: Mapping | None = None):
    """Re-express keypoints ``(..., K_src, D)`` and scores ``(..., K_src)`` in another skeleton.

    A target joint built from several source joints is their mean, with the lowest of their scores.
    Target joints with no counterpart are NaN with score 0.
    """
    mapping = mapping or get_mapping(source, target)
    kp = np.asarray(keypoints, dtype=float)
    sc = np.ones(kp.shape[:-1]) if scores is None else np.asarray(scores, dtype=float)
    n_src = len(get_skeleton(mapping.source))
    if kp.ndim < 2 or kp.shape[-2] != n_src or sc.shape != kp.shape[:-1]:
        raise PosekitError(f"expected keypoints (..., {n_src}, D) and scores (..., {n_src}) "
                           f"for skeleton {mapping.source!r}, got {kp.shape} and {sc.shape}")
    out_kp = np.full(kp.shape[:-2] + (len(mapping.sources), kp.shape[-1]), np.nan)
    out_sc = np.zeros(kp.shape[:-2] + (len(mapping.sources),))
    for t, idx in enumerate(mapping.sources):
        if idx:
            out_kp[..., t, :] = kp[..., list(idx), :].mean(axis=-2)
            out_sc[..., t] = sc[..., list(idx)].min(axis=-1)
    return out_kp, out_sc


__all__ = ["Skeleton", "Mapping", "get_skeleton", "load_skeleton", "register_skeleton",
           "list_skeletons", "skeleton_from_dict", "get_mapping", "list_mappings",
           "mapping_from_dict", "convert_keypoints"]
