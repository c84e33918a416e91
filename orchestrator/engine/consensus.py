"""Several reviewers, one answer: findings clustered across reviewers, counted at a quorum (all pure).

Two findings are about the same problem when all three hold:
- the same file (or both about the change as a whole: no file);
- nearby lines: both lines known and at most LINE_WINDOW apart, or a line missing on either side;
- similar words: the Jaccard index of their normalised word sets (lowercased, split on anything but
  letters and digits, stop words dropped, a crude suffix cut: "checks", "checked", "checking" ->
  "check") is at least LOCATED_SIMILARITY when both carry lines within the window (the place already
  says much), else UNLOCATED_SIMILARITY.
Clusters are the connected groups of that relation (union-find over all pairs), so the result does not
depend on the order reviewers answered in. Deterministic: no embeddings, no model call.

A cluster counts when distinct reviewers raising it reach the quorum. The quorum is capped at the
number of reviewers that gave a readable review (an unreadable answer abstains), so one remaining
reviewer still counts. A high-severity cluster below quorum is not dropped: it "needs a second
reviewer" (`pending`); `confirm` records that reviewer's answer. Below quorum otherwise: dropped, but
kept in `clusters` for the report.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from orchestrator.engine.review import Finding, ReviewVerdict, Severity, Verdict

LINE_WINDOW = 5
# Measured on pairs of reviewer phrasings of one problem (tests/engine/test_consensus.py holds them):
# "Off-by-one: the last item is never processed" vs "The loop is off by one and skips the last
# element" 0.33, "SQL injection: user input is interpolated into the query" vs "SQL query built with
# string formatting allows injection" 0.30, "Missing null check on input in parse()" vs "parse() does
# not check for None input" 0.80; unrelated findings in one file 0.0-0.12. At the same place a quarter
# of the words is enough; without one, it takes half. Known limit: two different problems worded
# alike at one place ("missing test for the error path" / "missing docstring for the error path",
# 0.60) merge; the cluster then keeps both messages in `members` for the report.
LOCATED_SIMILARITY = 0.25
UNLOCATED_SIMILARITY = 0.5

ClusterStatus = Literal["counts", "needs_second_reviewer", "not_confirmed", "below_quorum"]
_RANK: dict[Severity, int] = {"high": 3, "medium": 2, "low": 1}

_STOP_WORDS = frozenset(
    "a an the and or but if of in on at to for from by with as is are was were be been it its this that "
    "these those there here not no does do did has have had should would could can may might will must "
    "which when where what who how than then so into out up about also only just very".split()
)
_SYNONYMS = {"none": "null", "nil": "null", "nullptr": "null", "exception": "error", "err": "error"}
_SUFFIXES = ("ing", "ed", "es", "s")
_WORD = re.compile(r"[a-z0-9_]+")


def words(message: str) -> frozenset[str]:
    """The normalised word set of a finding's message (see the module's docstring)."""
    out = set()
    for word in _WORD.findall(message.lower()):
        if word in _STOP_WORDS:
            continue
        word = _SYNONYMS.get(word, word)
        for suffix in _SUFFIXES:
            if word.endswith(suffix) and len(word) - len(suffix) >= 3:
                word = word[: -len(suffix)]
                break
        out.add(word)
    return frozenset(out)


def similarity(a: str, b: str) -> float:
    """Jaccard index of the two messages' word sets; 1.0 for two messages with no words that are equal."""
    wa, wb = words(a), words(b)
    if not wa and not wb:
        return 1.0 if " ".join(a.lower().split()) == " ".join(b.lower().split()) else 0.0
    return len(wa & wb) / len(wa | wb)


def same_problem(a: Finding, b: Finding) -> bool:
    if _file(a) != _file(b):
        return False
    located = a.line is not None and b.line is not None
    if located and abs(a.line - b.line) > LINE_WINDOW:  # type: ignore[operator]
        return False
    threshold = LOCATED_SIMILARITY if located else UNLOCATED_SIMILARITY
    return similarity(a.message, b.message) >= threshold


def _file(finding: Finding) -> str | None:
    if finding.file is None:
        return None
    path = finding.file.strip().replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    return path


@dataclass(frozen=True)
class Raised:
    """One finding as one reviewer raised it; `order` is its place among all findings given."""

    reviewer: str
    finding: Finding
    order: int


@dataclass(frozen=True)
class Cluster:
    members: tuple[Raised, ...]  # in order
    status: ClusterStatus
    confirmed_by: str | None = None  # the second reviewer asked, once asked

    @property
    def reviewers(self) -> tuple[str, ...]:
        """Distinct reviewers who raised it, in the order they first did."""
        return tuple(dict.fromkeys(m.reviewer for m in self.members))

    @property
    def severity(self) -> Severity:
        return max((m.finding.severity for m in self.members), key=_RANK.__getitem__)

    @property
    def finding(self) -> Finding:
        """The one that stands for the cluster: the most severe, the earliest among those."""
        return min(self.members, key=lambda m: (-_RANK[m.finding.severity], m.order)).finding

    @property
    def counts(self) -> bool:
        return self.status == "counts"


@dataclass(frozen=True)
class Consensus:
    clusters: tuple[Cluster, ...]  # most severe first, then by first appearance
    quorum: int  # as configured
    effective_quorum: int  # capped at the readable reviews
    verdicts: Mapping[str, Verdict]  # each reviewer's own verdict
    abstained: tuple[str, ...] = ()  # reviewers whose answer had no readable verdict

    @property
    def counted(self) -> tuple[Cluster, ...]:
        return tuple(c for c in self.clusters if c.counts)

    @property
    def pending(self) -> tuple[int, ...]:
        """Indexes of the clusters waiting for a second reviewer."""
        return tuple(i for i, c in enumerate(self.clusters) if c.status == "needs_second_reviewer")

    @property
    def findings(self) -> tuple[Finding, ...]:
        """What the refine step is given: one finding per counted cluster."""
        return tuple(c.finding for c in self.counted)

    @property
    def verdict(self) -> Verdict | None:
        """None while a cluster waits for a second reviewer. Otherwise "request_changes" when a counted
        cluster is high or medium ("low" alone never requests changes, as a single reviewer is told)."""
        if self.pending:
            return None
        if any(c.severity in ("high", "medium") for c in self.counted):
            return "request_changes"
        return "approve"


def build_consensus(reviews: Sequence[tuple[str, ReviewVerdict]], *, quorum: int) -> Consensus:
    """Cluster the findings of `reviews` ((reviewer, its review), in any order) and count them."""
    if quorum < 1:
        raise ValueError(f"quorum must be at least 1, not {quorum}")
    names = [name for name, _ in reviews]
    if len(set(names)) != len(names):
        raise ValueError(f"each reviewer reviews once; got {names}")
    readable = [(name, review) for name, review in reviews if not review.unparsed]
    abstained = tuple(name for name, review in reviews if review.unparsed)
    effective = max(1, min(quorum, len(readable)))
    raised = [Raised(name, finding, 0) for name, review in readable for finding in review.findings]
    raised = [replace(r, order=i) for i, r in enumerate(raised)]
    clusters = [_status(members, effective) for members in _groups(raised)]
    clusters.sort(key=lambda c: (-_RANK[c.severity], c.members[0].order))
    return Consensus(
        clusters=tuple(clusters),
        quorum=quorum,
        effective_quorum=effective,
        verdicts={name: review.verdict for name, review in readable},
        abstained=abstained,
    )


def _groups(raised: Sequence[Raised]) -> list[tuple[Raised, ...]]:
    parent = list(range(len(raised)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(raised)):
        for j in range(i + 1, len(raised)):
            if same_problem(raised[i].finding, raised[j].finding):
                a, b = root(i), root(j)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    groups: dict[int, list[Raised]] = {}
    for i, item in enumerate(raised):
        groups.setdefault(root(i), []).append(item)
    return [tuple(members) for _, members in sorted(groups.items())]


def _status(members: tuple[Raised, ...], quorum: int) -> Cluster:
    cluster = Cluster(members=members, status="below_quorum")
    if len(cluster.reviewers) >= quorum:
        return replace(cluster, status="counts")
    if cluster.severity == "high":
        return replace(cluster, status="needs_second_reviewer")
    return cluster


def confirm(consensus: Consensus, index: int, reviewer: str, answer: ReviewVerdict) -> Consensus:
    """Record the second reviewer's answer on pending cluster `index`: it counts when that reviewer
    requests changes with a finding about the same problem; otherwise it is "not_confirmed". An
    unreadable answer (`unparsed`) decides nothing: the cluster stays pending, and the caller may ask
    another reviewer (choose_second_reviewer with `asked`)."""
    cluster = consensus.clusters[index]
    if answer.unparsed and cluster.status == "needs_second_reviewer" and reviewer not in cluster.reviewers:
        return consensus
    if cluster.status != "needs_second_reviewer":
        raise ValueError(f"cluster {index} is {cluster.status}, not waiting for a second reviewer")
    if reviewer in cluster.reviewers:
        raise ValueError(f"{reviewer} raised this finding; a second reviewer must be another one")
    order = 1 + max((m.order for c in consensus.clusters for m in c.members), default=-1)
    matching = [
        f
        for f in answer.findings
        if answer.verdict == "request_changes" and any(same_problem(f, m.finding) for m in cluster.members)
    ]
    if matching:
        joined = cluster.members + tuple(Raised(reviewer, f, order + i) for i, f in enumerate(matching))
        updated = Cluster(members=joined, status="counts", confirmed_by=reviewer)
    else:
        updated = replace(cluster, status="not_confirmed", confirmed_by=reviewer)
    clusters = list(consensus.clusters)
    clusters[index] = updated
    return replace(consensus, clusters=tuple(clusters))


def confirmation_request(cluster: Cluster) -> str:
    """The question a second reviewer is asked about one finding (answered in the review format)."""
    finding = cluster.finding
    where = finding.location() or "the change as a whole"
    return (
        f"Another reviewer raised this {finding.severity}-severity problem at {where}:\n\n"
        f"    {finding.message}\n\n"
        "Check it against the diff yourself. If it is a real problem, answer request_changes with one "
        "finding about it (same file and line); if it is not, answer approve with no findings."
    )


# --- who reviews ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewerChoice:
    chosen: tuple[str, ...]
    excluded: tuple[str, ...]  # pool members left out because they wrote the change
    short_by: int  # how many more were wanted than the pool could give


def choose_reviewers(
    pool: Iterable[str], *, authors: Iterable[str], count: int | None = None
) -> ReviewerChoice:
    """Reviewers from `pool` (in its order, duplicates dropped) that wrote none of the change: an
    author's CLI never reviews its own work. `count=None` takes every one that qualifies."""
    wrote = set(authors)
    unique = list(dict.fromkeys(pool))
    eligible = [name for name in unique if name not in wrote]
    wanted = len(eligible) if count is None else count
    chosen = tuple(eligible[:wanted])
    return ReviewerChoice(
        chosen=chosen,
        excluded=tuple(name for name in unique if name in wrote),
        short_by=max(0, wanted - len(chosen)),
    )


def choose_attempt_reviewer(pool: Sequence[str], *, author: str, all_authors: Iterable[str]) -> str | None:
    """The one reviewer of a best-of-N attempt: a CLI that wrote none of the attempts where the pool
    has one, else any CLI but the attempt's own author, else None (nobody may review it)."""
    authors = set(all_authors) | {author}
    for name in pool:
        if name not in authors:
            return name
    for name in pool:
        if name != author:
            return name
    return None


def choose_second_reviewer(
    pool: Sequence[str], cluster: Cluster, *, authors: Iterable[str], asked: Iterable[str] = ()
) -> str | None:
    """Who confirms a pending cluster: in pool order, not an author, not one who raised it, not one
    already asked. None when nobody is left (the cluster then stays below quorum)."""
    excluded = set(authors) | set(cluster.reviewers) | set(asked)
    return next((name for name in pool if name not in excluded), None)
