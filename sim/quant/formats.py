"""Weight number formats as data: every data type is a sorted grid of representable values.

Sources
-------
* ``BITMOD`` -- ``shared/reference/bitmod.md`` ("Data types"), which restates the BitMoD paper
  (HPCA 2025) and its artifact. Its values are written at twice the usual FP scale (E2M1's 6.0 is
  ``12``); symmetric per-group scaling makes the overall scale of a grid irrelevant, so the grids
  below keep bitmod.md's integers exactly.
* ``OLIVE`` -- the OliVe paper (Guo et al., ISCA 2023, arXiv 2304.07493) and its public artifact
  (``clevercool/ANT-Quantization``, ``olive_quantization``). bitmod.md names OliVe only as a
  baseline and gives no values, so these come from there (see :data:`OLIVE4_NORMAL`).
* ``OCP-MX`` -- OCP Microscaling Formats (MX) Specification v1.0 (2023): block of 32 elements,
  one shared E8M0 (power-of-two) scale, element types FP4 E2M1, FP6 E2M3, FP8 E4M3, INT8.

A :class:`FormatSpec` names the candidate data types one ``(format, bits)`` pair searches per
group (one candidate for the plain formats) and how the per-group scale is chosen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

BITMOD = "shared/reference/bitmod.md, 'Data types'"
OLIVE = "OliVe (ISCA 2023) public artifact, olive_quantization/antquant/quant_modules.py"
OCP_MX = "OCP Microscaling Formats (MX) Specification v1.0, section 5 (element data types)"


@dataclass(frozen=True)
class DataType:
    """One number format: a name, its sorted representable values, and where they come from."""

    name: str
    values: tuple[float, ...]
    source: str
    note: str = ""

    def __post_init__(self) -> None:
        v = tuple(float(x) for x in self.values)
        if list(v) != sorted(set(v)):
            raise ValueError(f"{self.name}: grid values must be sorted and distinct")
        object.__setattr__(self, "values", v)

    @property
    def grid(self) -> np.ndarray:
        return np.asarray(self.values, dtype=np.float32)

    @property
    def max_abs(self) -> float:
        return max(abs(self.values[0]), abs(self.values[-1]))

    @property
    def levels(self) -> int:
        return len(self.values)


def _sym(*magnitudes: float) -> tuple[float, ...]:
    """0 plus +-each magnitude, sorted."""
    mags = sorted(set(float(m) for m in magnitudes if m))
    return tuple([-m for m in reversed(mags)] + [0.0] + mags)


def _plus(base: tuple[float, ...], extra: float) -> tuple[float, ...]:
    return tuple(sorted(set(base) | {float(extra)}))


# --- bitmod.md grids (typed from the file, twice the usual FP scale) -------------------------------
INT3 = DataType("int3", tuple(range(-3, 4)), BITMOD)
INT4 = DataType("int4", tuple(range(-7, 8)), BITMOD)
INT8 = DataType("int8", tuple(range(-127, 128)), BITMOD,
                note="bitmod.md lists INT3 = {-3..3} and INT4 = {-7..7} (the most negative code "
                     "dropped, sign-symmetric); INT8 = {-127..127} is assumed by the same pattern.")
FP3 = DataType("fp3", _sym(1, 2, 4), BITMOD)
FP3_ER_POS = DataType("fp3_er_pos", _plus(FP3.values, +3), BITMOD, note="FP3 + {+3} (extra resolution)")
FP3_ER_NEG = DataType("fp3_er_neg", _plus(FP3.values, -3), BITMOD, note="FP3 + {-3} (extra resolution)")
FP3_EA_POS = DataType("fp3_ea_pos", _plus(FP3.values, +6), BITMOD, note="FP3 + {+6} (extra asymmetry)")
FP3_EA_NEG = DataType("fp3_ea_neg", _plus(FP3.values, -6), BITMOD, note="FP3 + {-6} (extra asymmetry)")
FP4 = DataType("fp4", _sym(1, 2, 3, 4, 6, 8, 12), BITMOD, note="E2M1 at twice the usual scale")
FP4_ER_POS = DataType("fp4_er_pos", _plus(FP4.values, +10), BITMOD, note="E2M1 + {+10} (extra resolution)")
FP4_ER_NEG = DataType("fp4_er_neg", _plus(FP4.values, -10), BITMOD, note="E2M1 + {-10} (extra resolution)")
FP4_EA_POS = DataType("fp4_ea_pos", _plus(FP4.values, +16), BITMOD, note="E2M1 + {+16} (extra asymmetry)")
FP4_EA_NEG = DataType("fp4_ea_neg", _plus(FP4.values, -16), BITMOD, note="E2M1 + {-16} (extra asymmetry)")
FLINT4 = DataType("flint4", _sym(1, 2, 3, 4, 6, 8, 16), BITMOD, note="ANT's flint at 4 bits")

# --- OliVe 4-bit (bitmod.md is silent; from the OliVe artifact) ------------------------------------
#: Normal values: int4 without the code 1000, which OliVe reserves as the outlier identifier.
OLIVE4_NORMAL = DataType("olive4_normal", tuple(range(-7, 8)), OLIVE)
#: Outliers: the artifact's 4-bit "abfloat" (E2M1, exponent bias 5, smallest code unused) on a grid
#: where the normal int4 step is 4 (normal max 28): magnitudes 48, 64, 96, 128, 192, 256, 384.
#: Divided by 4 to the normal step of 1 here: 12, 16, 24, 32, 48, 64, 96.
OLIVE4_OUTLIER = DataType("olive4_outlier", (12, 16, 24, 32, 48, 64, 96), OLIVE,
                          note="positive outlier magnitudes; the sign bit gives the negatives")
OLIVE4 = DataType("olive4", _sym(*range(1, 8), 12, 16, 24, 32, 48, 64, 96), OLIVE,
                  note="normal int4 {-7..7} together with the +-outlier abfloat values")
OLIVE4_THRESHOLD = 7.0  # |level| above this is an outlier (needs a victim)


# --- OCP MX element types (usual units, not doubled) -----------------------------------------------
def minifloat_values(exp_bits: int, man_bits: int, bias: int, max_value: float) -> tuple[float, ...]:
    """All finite values of a sign/exponent/mantissa minifloat with subnormals, up to ``max_value``.

    Exponent field 0 is subnormal (``2**(1-bias) * m/2**man_bits``); field e > 0 is normal
    (``2**(e-bias) * (1 + m/2**man_bits)``). Codes above ``max_value`` (NaN/Inf) are dropped.
    """
    mags = set()
    for e in range(2**exp_bits):
        for m in range(2**man_bits):
            if e == 0:
                v = 2.0 ** (1 - bias) * (m / 2**man_bits)
            else:
                v = 2.0 ** (e - bias) * (1 + m / 2**man_bits)
            if v <= max_value:
                mags.add(v)
    return _sym(*mags)


@dataclass(frozen=True)
class MxElement:
    """An OCP MX element type; ``emax`` is the exponent of its largest normal value."""

    dtype: DataType
    emax: int


MXFP4_E2M1 = MxElement(DataType("mxfp4_e2m1", minifloat_values(2, 1, 1, 6.0), OCP_MX), emax=2)
MXFP6_E2M3 = MxElement(DataType("mxfp6_e2m3", minifloat_values(2, 3, 1, 7.5), OCP_MX), emax=2)
MXFP8_E4M3 = MxElement(DataType("mxfp8_e4m3", minifloat_values(4, 3, 7, 448.0), OCP_MX), emax=8)
MXINT8 = MxElement(DataType("mxint8", tuple(i / 64 for i in range(-127, 128)), OCP_MX,
                            note="int8 with an implicit 2**-6 scale; -128 (-2.0) left out, "
                                 "keeping the grid symmetric like the other INT grids"), emax=0)
MX_BLOCK = 32  # OCP MX v1.0: k = 32 elements share one E8M0 scale
MX_SCALE_BITS = 8

Rule = Literal["absmax", "mx", "olive"]


@dataclass(frozen=True)
class FormatSpec:
    """What ``quantize(format, bits)`` searches: candidates in order (a tie keeps the earlier)."""

    format: str
    bits: int
    candidates: tuple[DataType, ...]
    rule: Rule = "absmax"
    default_group: int = 128
    meta_bits: int = 8  # per group: scale + type selector (bitmod.md); E8M0 scale for MX
    mx_emax: tuple[int, ...] = field(default=())
    description: str = ""

    def bits_per_weight(self, group_size: int) -> float:
        return self.bits + self.meta_bits / group_size


def _spec(fmt: str, bits: int, cands: tuple[DataType, ...], desc: str, **kw) -> FormatSpec:
    return FormatSpec(fmt, bits, cands, description=desc, **kw)


FORMATS: dict[tuple[str, int], FormatSpec] = {
    s: v for s, v in (
        ((f.format, f.bits), f) for f in [
            _spec("int", 3, (INT3,), "INT3"),
            _spec("int", 4, (INT4,), "INT4"),
            _spec("int", 8, (INT8,), "INT8"),
            _spec("fp", 3, (FP3,), "FP3"),
            _spec("fp", 4, (FP4,), "FP4 E2M1"),
            _spec("flint", 4, (FLINT4,), "FLINT4 (ANT)"),
            _spec("ant", 3, (INT3, FP3), "ANT-like: INT3 or FP3 per group"),
            _spec("ant", 4, (INT4, FLINT4), "ANT-like: INT4 or FLINT4 per group"),
            _spec("olive", 4, (OLIVE4,), "OliVe outlier-victim pairs (int4 + abfloat)", rule="olive"),
            _spec("bitmod", 3, (FP3_ER_POS, FP3_ER_NEG, FP3_EA_POS, FP3_EA_NEG), "BitMoD FP3 ER+EA"),
            _spec("bitmod", 4, (FP4_ER_POS, FP4_ER_NEG, FP4_EA_POS, FP4_EA_NEG), "BitMoD FP4 ER+EA"),
            _spec("bitmod-er", 3, (FP3_ER_POS, FP3_ER_NEG), "BitMoD FP3 ER only"),
            _spec("bitmod-er", 4, (FP4_ER_POS, FP4_ER_NEG), "BitMoD FP4 ER only"),
            _spec("bitmod-ea", 3, (FP3_EA_POS, FP3_EA_NEG), "BitMoD FP3 EA only"),
            _spec("bitmod-ea", 4, (FP4_EA_POS, FP4_EA_NEG), "BitMoD FP4 EA only"),
            _spec("mxfp", 4, (MXFP4_E2M1.dtype,), "OCP MXFP4 (E2M1, block 32)", rule="mx",
                  default_group=MX_BLOCK, meta_bits=MX_SCALE_BITS, mx_emax=(MXFP4_E2M1.emax,)),
            _spec("mxfp", 6, (MXFP6_E2M3.dtype,), "OCP MXFP6 (E2M3, block 32)", rule="mx",
                  default_group=MX_BLOCK, meta_bits=MX_SCALE_BITS, mx_emax=(MXFP6_E2M3.emax,)),
            _spec("mxfp", 8, (MXFP8_E4M3.dtype,), "OCP MXFP8 (E4M3, block 32)", rule="mx",
                  default_group=MX_BLOCK, meta_bits=MX_SCALE_BITS, mx_emax=(MXFP8_E4M3.emax,)),
            _spec("mxint", 8, (MXINT8.dtype,), "OCP MXINT8 (block 32)", rule="mx",
                  default_group=MX_BLOCK, meta_bits=MX_SCALE_BITS, mx_emax=(MXINT8.emax,)),
        ]
    )
}

DATA_TYPES: dict[str, DataType] = {
    d.name: d for d in [INT3, INT4, INT8, FP3, FP3_ER_POS, FP3_ER_NEG, FP3_EA_POS, FP3_EA_NEG, FP4,
                        FP4_ER_POS, FP4_ER_NEG, FP4_EA_POS, FP4_EA_NEG, FLINT4, OLIVE4_NORMAL,
                        OLIVE4_OUTLIER, OLIVE4, MXFP4_E2M1.dtype, MXFP6_E2M3.dtype,
                        MXFP8_E4M3.dtype, MXINT8.dtype]
}


def format_names() -> list[str]:
    return sorted({f for f, _ in FORMATS})


def bits_for(fmt: str) -> list[int]:
    return sorted(b for f, b in FORMATS if f == fmt)
