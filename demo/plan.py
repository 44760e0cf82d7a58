"""The shape of a demo operator: how many users sit where in the referral forest.

Everything the generator makes is derived from a `SeedPlan`. The plan fixes, per scale,
the exact number of users on each level of each referral tree, and which of them may
recruit ("candidates"). Because a user's depth is its level, the headline numbers of
the robust database are known before a single row is written:

* affiliates (``cadastro.afiliado`` or referred someone) = the number of candidates:
  a candidate that recruited nobody is flagged ``afiliado = true``, nobody else is;
* sum over users of min(depth, 5) (the ``affiliate_referrals`` row count) = sum of
  min(level, 5) * users on that level;
* the biggest affiliate's network = the sizes of levels 1..5 of tree 1.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Literal

Scale = Literal["tiny", "small", "seed", "seed3"]

# "seed3": three times the strategy's operator (900,000 users, 144,783 affiliates, ~34M bets),
# to see which ETL steps grow with the database rather than with the batch (issue 17).
SCALE_FACTORS: dict[str, float] = {"tiny": 0.001, "small": 0.05, "seed": 1.0, "seed3": 3.0}

# The strategy document's operator, at "seed" scale.
SEED_USERS = 300_000
SEED_AFFILIATES = 48_261

# The document's example affiliate: the root of tree 1 gets this cadastro id.
EXAMPLE_AFFILIATE_ID = 1_622_968

# Referral trees at seed scale: one (users, share of them that recruit) per level,
# level 0 first. Tree 1 is the document's example affiliate: 757 direct referrals,
# 3,478 at level 2 and a 5-level network of exactly 95,558 users.
MEGA_TREES: tuple[tuple[tuple[int, float], ...], ...] = (
    ((1, 1.0), (757, 0.7), (3478, 0.5), (13200, 0.3), (30100, 0.15), (48023, 0.03), (5000, 0.05), (900, 0.0)),
    ((1, 1.0), (420, 0.7), (1600, 0.5), (4200, 0.3), (6500, 0.15), (5000, 0.0)),
    ((1, 1.0), (260, 0.7), (900, 0.5), (1900, 0.3), (2100, 0.1), (900, 0.0)),
)
# The long tail: many small affiliates (level 0, their number fills the affiliate
# count exactly) with shallow downlines. Sized so that sum(min(depth, 5)) = 614,944.
GENERIC_LEVELS: tuple[tuple[int, float], ...] = ((58_236, 0.11), (12_000, 0.09), (2_500, 0.0))

# Weight of the first recruiter of each level of a tree (it joined first, so it is the
# one everybody below builds on): makes a few nested "mega" affiliates.
FOUNDER_WEIGHT = 150.0

GENERIC_TREE = len(MEGA_TREES) + 1
ORGANIC_TREE = 0


@dataclass(frozen=True)
class Category:
    """The users of one level of one tree."""

    tree: int  # 0 = organic users that nobody referred and who refer nobody
    level: int
    users: int
    candidates: int  # how many of them may recruit (and so are affiliates)
    founder_weight: float


@dataclass(frozen=True)
class IdSpace:
    """A shuffled, gappy, unique id for ordinal n: base + ((n * mult) % modulus) * gap + jitter.

    ``modulus`` is a prime larger than any ordinal, so n -> (n * mult) % modulus is a
    bijection: ids are unique, never dense and unrelated to insertion time.
    """

    base: int
    mult: int
    modulus: int
    gap: int

    def sql(self, ordinal: str, salt: int) -> str:
        """The SQL expression of the id of `ordinal` (an SQL bigint expression)."""
        return (
            f"({self.base}::bigint + (({ordinal})::bigint * {self.mult} % {self.modulus}) * "
            f"{self.gap} + floor(pg_temp.u(({ordinal})::bigint, {salt}) * {self.gap})::bigint)"
        )


@dataclass(frozen=True)
class SeedPlan:
    """All counts and knobs of one generated operator."""

    scale: str
    seed: int
    factor: float
    users: int
    affiliates: int
    categories: tuple[Category, ...]
    orphan_referrals: int  # tracked rows whose afiliado_id is not (yet) in cadastro
    self_referrals: int
    orphan_deposits: int  # deposits of a user id that is not in cadastro
    player_share: float  # share of users that ever play

    @property
    def referral_pairs(self) -> int:
        """Sum over users of min(depth, 5): the affiliate_referrals row count."""
        return sum(min(c.level, 5) * c.users for c in self.categories)

    @property
    def biggest_network(self) -> tuple[int, ...]:
        """Level 1..5 sizes of tree 1's root."""
        return tuple(c.users for c in self.categories if c.tree == 1 and 1 <= c.level <= 5)


def _round(x: float) -> int:
    return math.floor(x + 0.5)


def _tree_categories(
    tree: int, levels: tuple[tuple[int, float], ...], factor: float, min_one: bool
) -> list[Category]:
    users = [max(1, _round(n * factor)) if min_one else _round(n * factor) for n, _ in levels]
    out = []
    for level, ((_, share), n) in enumerate(zip(levels, users, strict=True)):
        has_next = level + 1 < len(users) and users[level + 1] > 0
        candidates = min(n, max(1 if has_next else 0, _round(n * share)))
        out.append(
            Category(tree, level, n, candidates, FOUNDER_WEIGHT if tree != GENERIC_TREE or level > 0 else 1.0)
        )
    return out


def _prime_above(n: int) -> int:
    candidate = n + 1 if n % 2 == 0 else n + 2
    while any(candidate % d == 0 for d in range(3, math.isqrt(candidate) + 1, 2)):
        candidate += 2
    return candidate


# Where each table's ids live and how sparse they are: (base, gap). A table's ids stay below
# base + (its rows + a few) * gap, so the spaces stay apart while cadastro has under 7.25M
# rows, tracked under 23M and depositos under 100M (the seed3 scale: 0.9M, 0.6M and 4.9M).
ID_LAYOUT: dict[str, tuple[int, int]] = {
    "cadastro": (1_000_000, 4),
    "tracked": (30_000_000, 3),
    "depositos": (100_000_000, 3),
    "saque": (400_000_000, 5),
    "casino_bets_v": (1_000_000_000, 3),
}


def id_space(seed: int, table: str, ordinals: int) -> IdSpace:
    """The id space of `table` for ordinals 1..`ordinals` (known once the rows are planned)."""
    base, gap = ID_LAYOUT[table]
    modulus = _prime_above(max(ordinals, 100))
    digest = hashlib.sha256(f"{seed}:{table}".encode()).digest()
    mult = modulus // 3 + int.from_bytes(digest[:8], "big") % (modulus // 3)
    return IdSpace(base=base, mult=mult, modulus=modulus, gap=gap)


def build_plan(scale: str, seed: int) -> SeedPlan:
    """The plan of `scale` (a key of SCALE_FACTORS: "tiny", "small", "seed", "seed3") for `seed`."""
    if scale not in SCALE_FACTORS:
        raise ValueError(f"unknown scale {scale!r}; use one of {', '.join(SCALE_FACTORS)}")
    factor = SCALE_FACTORS[scale]
    users = _round(SEED_USERS * factor)
    affiliates = _round(SEED_AFFILIATES * factor)

    categories: list[Category] = []
    for tree, levels in enumerate(MEGA_TREES, start=1):
        categories += _tree_categories(tree, levels, factor, min_one=True)
    generic = _tree_categories(GENERIC_TREE, ((0, 1.0), *GENERIC_LEVELS), factor, min_one=True)
    roots = affiliates - sum(c.candidates for c in categories) - sum(c.candidates for c in generic[1:])
    if roots < 1:
        raise ValueError(f"scale {scale!r} leaves no room for small affiliates")
    categories.append(Category(GENERIC_TREE, 0, roots, roots, 1.0))
    categories += generic[1:]
    organic = users - sum(c.users for c in categories)
    if organic < 10:
        raise ValueError(f"scale {scale!r} leaves no room for organic users")
    categories.append(Category(ORGANIC_TREE, 0, organic, 0, 1.0))

    return SeedPlan(
        scale=scale,
        seed=seed,
        factor=factor,
        users=users,
        affiliates=affiliates,
        categories=tuple(categories),
        orphan_referrals=max(1, _round(25 * factor)),
        self_referrals=1 if factor < 1 else 2,
        orphan_deposits=max(1, _round(10 * factor)),
        player_share=0.40,
    )
