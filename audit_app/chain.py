"""The pure core of the audit trail: canonical JSON, RFC 6962 hashes, the Merkle tree and its proofs.

Standard library only, because the offline verifier `intended-verify` imports this module
where neither Django nor the project's other dependencies are installed.

Hashing is RFC 6962: leaf = SHA-256(0x00 || data), node = SHA-256(0x01 || left || right).
Proof verification follows RFC 9162 sections 2.1.3.2 and 2.1.4.2.
"""

from __future__ import annotations

import hashlib
import mmap
import tempfile
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from json.encoder import encode_basestring as _json_string  # type: ignore[attr-defined]
from typing import Any

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(ValueError):
    """A proof that does not prove what it claims."""


MAX_SAFE_INTEGER = 2**53 - 1


def canonical_json(value: Any) -> bytes:
    """RFC 8785 (JCS) bytes of a JSON value; raises ValueError on NaN, infinities, integers
    beyond 2^53, lone surrogates and non-JSON types.

    Our own encoder because it is on the gateway's hot path (several times faster than the
    `rfc8785` package, which the tests hold it to, along with the RFC's published vectors)."""
    parts: list[str] = []
    _encode(value, parts)
    try:
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("a string holds a lone surrogate") from exc


def canonical_sha256(value: Any) -> str:
    """Hex SHA-256 of a value's canonical bytes: how arguments and tool definitions are hashed."""
    return hashlib.sha256(canonical_json(value)).hexdigest()


def canonical_members(obj: dict[str, Any]) -> dict[str, str]:
    """Each member of an object encoded on its own, to be joined later by `canonical_object`
    (lets a writer add fields such as seq without encoding the rest again)."""
    members: dict[str, str] = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise ValueError(f"object key {key!r} is not a string")
        parts: list[str] = []
        _encode(value, parts)
        members[key] = "".join(parts)
    return members


def canonical_object(members: dict[str, str]) -> bytes:
    """The RFC 8785 bytes of an object from its encoded members (see `canonical_members`)."""
    ordered = sorted(members) if all(k.isascii() for k in members) else sorted(members, key=_utf16_order)
    text = "{" + ",".join(_encode_string(k) + ":" + members[k] for k in ordered) + "}"
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("a string holds a lone surrogate") from exc


def _encode(value: Any, parts: list[str]) -> None:
    if isinstance(value, str):
        parts.append(_encode_string(value))
    elif value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise ValueError(f"integer {value} is outside the range JSON numbers hold exactly")
        parts.append(str(int(value)))
    elif isinstance(value, float):
        parts.append(es6_number(value))
    elif isinstance(value, dict):
        if not value:
            parts.append("{}")
            return
        for key in value:
            if not isinstance(key, str):
                raise ValueError(f"object key {key!r} is not a string")
        parts.append("{")
        first = True
        ordered = sorted(value) if all(k.isascii() for k in value) else sorted(value, key=_utf16_order)
        for key in ordered:
            if not first:
                parts.append(",")
            first = False
            parts.append(_encode_string(key))
            parts.append(":")
            _encode(value[key], parts)
        parts.append("}")
    elif isinstance(value, (list, tuple)):
        parts.append("[")
        for i, item in enumerate(value):
            if i:
                parts.append(",")
            _encode(item, parts)
        parts.append("]")
    else:
        raise ValueError(f"{type(value).__name__} is not a JSON type")


def _utf16_order(key: str) -> bytes:
    # RFC 8785 sorts keys by UTF-16 code units; big-endian bytes compare the same way
    return key.encode("utf-16-be", "surrogatepass")


def _encode_string(text: str) -> str:
    return _json_string(text)


def es6_number(x: float) -> str:
    """ECMAScript Number::toString, which RFC 8785 prescribes for numbers."""
    if x != x or x in (float("inf"), float("-inf")):
        raise ValueError(f"{x} is not a JSON number")
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    mantissa, _, exp_text = repr(abs(x)).partition("e")
    exponent = int(exp_text) if exp_text else 0
    whole, _, fraction = mantissa.partition(".")
    if whole == "0":
        stripped = fraction.lstrip("0")
        n = exponent - (len(fraction) - len(stripped))
        digits = stripped
    else:
        n = exponent + len(whole)
        digits = whole + fraction
    digits = digits.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    e = n - 1
    mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{sign}{mantissa}e{'+' if e > 0 else '-'}{abs(e)}"


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _largest_power_of_two_below(n: int) -> int:
    """The largest power of two k with k < n (n >= 2), RFC 6962's split point."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """An in-memory RFC 6962 tree over leaf hashes, with every perfect subtree cached.

    Building it costs one pass over the leaves; each root, inclusion or consistency proof
    afterwards costs O(log^2 n) hash operations.
    """

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        self.levels: list[list[bytes]] = [list(leaf_hashes)]
        level = self.levels[0]
        while len(level) > 1:
            level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            self.levels.append(level)

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def append(self, leaf: bytes) -> None:
        self.levels[0].append(leaf)
        index, height = len(self.levels[0]) - 1, 0
        while index & 1:
            left = self.levels[height][index - 1]
            right = self.levels[height][index]
            height, index = height + 1, index >> 1
            if len(self.levels) <= height:
                self.levels.append([])
            self.levels[height].append(node_hash(left, right))

    def node(self, height: int, index: int) -> bytes:
        """The root of the perfect subtree of 2**height leaves starting at leaf index * 2**height."""
        return self.levels[height][index]

    def subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end])."""
        n = end - start
        if n == 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0 and start % n == 0:
            return self.node(n.bit_length() - 1, start // n)
        k = _largest_power_of_two_below(n)
        return node_hash(self.subtree(start, start + k), self.subtree(start + k, end))

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        if size > self.size:
            raise ValueError(f"tree has {self.size} leaves, not {size}")
        return self.subtree(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 6962 PATH(index, D[0:size]), ordered from the leaf up."""
        size = self.size if size is None else size
        if not 0 <= index < size <= self.size:
            raise ValueError(f"no leaf {index} in a tree of size {size}")
        return self._path(index, 0, size)

    def _path(self, m: int, start: int, end: int) -> list[bytes]:
        n = end - start
        if n == 1:
            return []
        k = _largest_power_of_two_below(n)
        if m < k:
            return self._path(m, start, start + k) + [self.subtree(start + k, end)]
        return self._path(m - k, start + k, end) + [self.subtree(start, start + k)]

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """RFC 6962 PROOF(size1, D[0:size2])."""
        size2 = self.size if size2 is None else size2
        if not 0 < size1 <= size2 <= self.size:
            raise ValueError(f"no consistency proof from {size1} to {size2}")
        if size1 == size2:
            return []
        return self._subproof(size1, 0, size2, True)

    def _subproof(self, m: int, start: int, end: int, complete: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if complete else [self.subtree(start, end)]
        k = _largest_power_of_two_below(n)
        if m <= k:
            return self._subproof(m, start, start + k, complete) + [self.subtree(start + k, end)]
        return self._subproof(m - k, start + k, end, False) + [self.subtree(start, start + k)]


# A tile: the perfect subtree over TILE_SIZE leaves starting at a multiple of TILE_SIZE. The
# sealer stores each full tile's root (audit_app.models.AuditTile), so that a proof over n
# entries reads n / TILE_SIZE roots and the leaves of the one or two tiles it descends into,
# not all n leaf hashes.
TILE_HEIGHT = 8
TILE_SIZE = 1 << TILE_HEIGHT


class TiledTree(MerkleTree):
    """The tree over the first `size` leaves, from the roots of its full tiles and, on demand,
    the leaves of a tile (`read_tile(t)`: the leaf hashes of tile t, fewer for the last, partial
    one). Proofs and roots are the same as MerkleTree's over every leaf; a wrong stored root
    gives a proof that fails against the signed root, never a proof of something else."""

    # Tiles of leaves kept, the most recently used: an export proving its entries in seq order
    # keeps its memory constant, and the partial last tile, on most paths, stays.
    CACHED_TILES = 8

    def __init__(self, size: int, tile_roots: Sequence[bytes], read_tile: Any) -> None:
        if len(tile_roots) != size // TILE_SIZE:
            raise ValueError(f"a tree of {size} leaves has {size // TILE_SIZE} full tiles, not {len(tile_roots)}")
        self._size = size
        self._top = MerkleTree(tile_roots)
        self._read_tile = read_tile
        self._tiles: OrderedDict[int, MerkleTree] = OrderedDict()

    @property
    def size(self) -> int:
        return self._size

    def append(self, leaf: bytes) -> None:
        raise TypeError("a tiled tree is read from stored tiles; it does not grow")

    def node(self, height: int, index: int) -> bytes:
        if index < 0 or height < 0 or (index + 1) << height > self._size:
            raise IndexError(f"no node {index} at height {height} in a tree of {self._size} leaves")
        if height >= TILE_HEIGHT:
            return self._top.node(height - TILE_HEIGHT, index)
        tile = (index << height) >> TILE_HEIGHT
        if tile in self._tiles:
            self._tiles.move_to_end(tile)
        else:
            leaves = list(self._read_tile(tile))
            expected = min(TILE_SIZE, self._size - tile * TILE_SIZE)
            if len(leaves) != expected:
                raise ValueError(f"tile {tile} has {len(leaves)} leaves, not {expected}")
            self._tiles[tile] = MerkleTree(leaves)
            if len(self._tiles) > self.CACHED_TILES:
                self._tiles.popitem(last=False)
        return self._tiles[tile].node(height, index - (tile << (TILE_HEIGHT - height)))


def tile_root(leaf_hashes: Sequence[bytes]) -> bytes:
    """The root of one full tile."""
    if len(leaf_hashes) != TILE_SIZE:
        raise ValueError(f"a tile has {TILE_SIZE} leaves, not {len(leaf_hashes)}")
    return MerkleTree(leaf_hashes).node(TILE_HEIGHT, 0)


class SpilledMerkleTree(MerkleTree):
    """The same tree with its levels in a temporary file instead of in memory (64 bytes of disk
    per leaf, a constant amount of memory): what the exporter builds to prove a bundle's
    entries against a checkpoint of any size. Feed it the leaves in order, then `close()`."""

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._files: list[Any] = []
        self._counts: list[int] = []
        self._pending: list[bytes | None] = []  # per height: a left child waiting for its right
        self._maps: list[mmap.mmap | None] = []
        for leaf in leaf_hashes:
            self.append(leaf)

    @property
    def size(self) -> int:
        return self._counts[0] if self._counts else 0

    def append(self, leaf: bytes) -> None:
        if self._maps:
            raise RuntimeError("the tree is being read; build a new one to add leaves")
        height, value = 0, leaf
        while True:
            if height == len(self._files):
                self._files.append(tempfile.TemporaryFile(prefix="intended-tree-"))
                self._counts.append(0)
                self._pending.append(None)
            self._files[height].write(value)
            self._counts[height] += 1
            left = self._pending[height]
            if left is None:
                self._pending[height] = value
                return
            self._pending[height] = None
            height, value = height + 1, node_hash(left, value)

    def node(self, height: int, index: int) -> bytes:
        if not self._maps:
            for handle in self._files:
                handle.flush()
            self._maps = [mmap.mmap(h.fileno(), 0, access=mmap.ACCESS_READ) if c else None
                          for h, c in zip(self._files, self._counts, strict=True)]
        if height >= len(self._counts) or index >= self._counts[height]:
            raise IndexError(f"no node {index} at height {height}")
        view = self._maps[height]
        assert view is not None
        return view[index * HASH_SIZE:(index + 1) * HASH_SIZE]

    def close(self) -> None:
        for view in self._maps:
            if view is not None:
                view.close()
        for handle in self._files:
            handle.close()
        self._maps, self._files, self._counts, self._pending = [], [], [], []

    def __enter__(self) -> SpilledMerkleTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    return MerkleTree(leaf_hashes).root()


class CompactRange:
    """The roots of the perfect subtrees covering the first `size` leaves, largest first.

    Enough to extend a tree by new leaves and compute its root without reading the old
    leaves again (what the sealer keeps between checkpoints).
    """

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if len(hashes) != bin(size).count("1"):
            raise ValueError(f"a compact range of size {size} has {bin(size).count('1')} hashes, not {len(hashes)}")
        self.size = size
        self.hashes = list(hashes)

    def append(self, leaf: bytes) -> None:
        self.hashes.append(leaf)
        self.size += 1
        carry = self.size
        # each trailing zero bit of the new size is a pair of equal subtrees to merge
        while carry & 1 == 0:
            right = self.hashes.pop()
            left = self.hashes.pop()
            self.hashes.append(node_hash(left, right))
            carry >>= 1

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        result = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            result = node_hash(left, result)
        return result


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes, not {HASH_SIZE}")


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """RFC 9162 2.1.3.2; raises ProofError unless `leaf` is at `index` in the tree `root` of `size`."""
    if index < 0 or index >= size:
        raise ProofError(f"index {index} is outside a tree of size {size}")
    _check_hash(leaf, "leaf hash")
    _check_hash(root, "root hash")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        _check_hash(p, "proof element")
        if sn == 0:
            raise ProofError("proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn & 1 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("proof is too short")
    if r != root:
        raise ProofError("calculated root does not match")


def verify_consistency(size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]) -> None:
    """RFC 9162 2.1.4.2; raises ProofError unless tree `root2` of `size2` extends tree `root1` of `size1`."""
    if size1 <= 0:
        raise ProofError("consistency from an empty tree is not provable")
    if size1 > size2:
        raise ProofError(f"size1 {size1} is larger than size2 {size2}")
    if size1 == size2:
        if proof:
            raise ProofError("proof between equal sizes must be empty")
        if root1 != root2:
            raise ProofError("equal sizes with different roots")
        return
    if not proof:
        raise ProofError("empty proof")
    _check_hash(root1, "root1")
    _check_hash(root2, "root2")
    for p in proof:
        _check_hash(p, "proof element")
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn & 1 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("proof is too short")
    if fr != root1:
        raise ProofError("calculated root1 does not match")
    if sr != root2:
        raise ProofError("calculated root2 does not match")
