"""Address mapping: a physical byte address <-> the standard's level coordinates.

A mapping string lists two-letter level codes from the most significant field to the least, e.g.
``rorabgbachco`` = row | rank | bank group | bank | channel | column, with the byte offset of one
burst below the column field (NeuPIMs / DRAMsim3 convention). The column field counts bursts:
a row of ``columns`` device columns holds ``columns / burst_length`` bursts. Every field must appear
exactly once and every level's count must be a power of two.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.errors import LlmsimError


def _log2_exact(n: int) -> int | None:
    return n.bit_length() - 1 if n > 0 and n & (n - 1) == 0 else None


@dataclass(frozen=True)
class AddressMapping:
    order: tuple[int, ...]        # level indices, most significant first
    bits: tuple[int, ...]         # field width per level index
    offset_bits: int              # bytes within one burst
    level_codes: tuple[str, ...]

    @property
    def address_bits(self) -> int:
        return self.offset_bits + sum(self.bits)

    @property
    def capacity_bytes(self) -> int:
        return 1 << self.address_bits

    def _shifts(self) -> dict[int, int]:
        shift = self.offset_bits
        out = {}
        for lvl in reversed(self.order):
            out[lvl] = shift
            shift += self.bits[lvl]
        return out

    def decode(self, addr: int) -> tuple[int, ...]:
        """Byte address -> coordinates per level (column in bursts)."""
        if not 0 <= addr < self.capacity_bytes:
            raise ValueError(f"address {addr:#x} outside 0..{self.capacity_bytes - 1:#x}")
        shifts = self._shifts()
        return tuple((addr >> shifts[i]) & ((1 << self.bits[i]) - 1) for i in range(len(self.bits)))

    def encode(self, coords: tuple[int, ...] | list[int], byte: int = 0) -> int:
        shifts = self._shifts()
        addr = byte
        for i, c in enumerate(coords):
            if not 0 <= c < (1 << self.bits[i]):
                raise ValueError(f"{self.level_codes[i]} coordinate {c} outside 0..{(1 << self.bits[i]) - 1}")
            addr |= c << shifts[i]
        return addr

    def decode_many(self, addrs: np.ndarray) -> np.ndarray:
        """Vectorised decode: an (n,) int64 array of addresses -> an (n, levels) array."""
        addrs = np.asarray(addrs, dtype=np.int64)
        shifts = self._shifts()
        out = np.empty((addrs.shape[0], len(self.bits)), dtype=np.int64)
        for i in range(len(self.bits)):
            out[:, i] = (addrs >> shifts[i]) & ((1 << self.bits[i]) - 1)
        return out


def parse_mapping(mapping: str | list[str], level_codes: list[str], counts: list[int], burst_bytes: int,
                  columns_per_burst: int, origin: str = "address_mapping") -> AddressMapping:
    """Check and build a mapping. ``counts`` are per level (channel first); the column count is in
    device columns and is divided by ``columns_per_burst`` (the burst length) for the field."""
    if isinstance(mapping, str):
        if len(mapping) % 2:
            raise LlmsimError(f"{origin}: expected two-letter level codes, found {mapping!r} (odd length)")
        codes = [mapping[i:i + 2] for i in range(0, len(mapping), 2)]
    else:
        codes = list(mapping)
    for c in codes:
        if c not in level_codes:
            raise LlmsimError(f"{origin}: unknown field {c!r} in {mapping!r} (expected codes {', '.join(level_codes)})")
    for c in level_codes:
        n = codes.count(c)
        if n != 1:
            what = "misses" if n == 0 else "repeats"
            raise LlmsimError(f"{origin}: {mapping!r} {what} the field {c!r} (expected each of {', '.join(level_codes)} once)")
    bits = []
    for i, (code, count) in enumerate(zip(level_codes, counts)):
        units = count // columns_per_burst if code == "co" else count
        if code == "co" and count % columns_per_burst:
            raise LlmsimError(f"{origin}: {count} columns is not a whole number of bursts of {columns_per_burst}")
        b = _log2_exact(units)
        if b is None:
            raise LlmsimError(f"{origin}: the {code!r} field cannot address {units} units (expected a power of two)")
        bits.append(b)
    ob = _log2_exact(burst_bytes)
    if ob is None:
        raise LlmsimError(f"{origin}: a burst of {burst_bytes} bytes is not a power of two")
    order = tuple(level_codes.index(c) for c in codes)
    return AddressMapping(order, tuple(bits), ob, tuple(level_codes))
