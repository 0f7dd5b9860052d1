"""The SYN-flood detector's numpy tables answer as the Python dicts they replaced: SYNs waiting for their ACK
(a repeated SYN keeps its place, an ACKed flow leaves, the oldest are forgotten past the limit), and the
sources of each service (first come first stored, within the per-service cap and the shared budget)."""

from __future__ import annotations

import numpy as np

from sentinel.traffic.detectors.floods import PendingSyns, Services, SourceBudget, SourceCounts


def test_pending_syns_behave_as_an_insertion_ordered_dict() -> None:
    rng = np.random.default_rng(11)
    limit = 300
    pending, model = PendingSyns(limit), {}
    for _ in range(400):
        syns = rng.integers(1, 2000, int(rng.integers(0, 120))).astype(np.uint64)
        codes = rng.integers(0, 1 << 40, syns.size)
        pending.put(syns, codes)
        model.update(zip(syns.tolist(), codes.tolist(), strict=True))
        while len(model) > limit:
            del model[next(iter(model))]
        acks = rng.integers(1, 2000, int(rng.integers(0, 120))).astype(np.uint64)
        got = sorted(pending.pop(acks).tolist())
        expected = sorted(model.pop(k) for k in set(acks.tolist()) if k in model)
        assert got == expected
        assert len(pending) == len(model)
        assert pending.live_keys().tolist() == list(model)  # oldest first


def test_services_store_sources_first_come_first_within_their_cap_and_the_budget() -> None:
    budget = SourceBudget(left=5)
    services = Services(budget, max_entries=2)
    at = services.slots(np.array([10, 10, 20, 30]), np.array([80, 80, 22, 1]))
    assert at.tolist() == [0, 0, 1, -1] and services.overflow == 1  # a third service does not fit
    budget.add(services.budget_slot[np.array([0, 0, 0, 1])], np.array([7, 3, 7, 9]))
    budget.add(services.budget_slot[np.array([0, 1, 1, 0])], np.array([5, 4, 6, 8]))
    web, ssh = services.get((10, 80)), services.get((20, 22))
    assert web is not None and ssh is not None and services.get((30, 1)) is None
    # stored in arrival order until the budget of 5 ran out: 7, 3, 9, then 5, 4; 6 and 8 came too late
    assert web.sources.top(10) == [(7, 2), (3, 1), (5, 1)] and web.sources.unattributed == 1
    assert ssh.sources.top(10) == [(4, 1), (9, 1)] and ssh.sources.unattributed == 1
    assert budget.left == 0 and len(web.sources) + len(ssh.sources) == 5
    assert dict(services.items()).keys() == {(10, 80), (20, 22)}
    alone = SourceCounts()  # a service of its own budget
    alone.add(np.array([2, 2, 1]))
    assert alone.top(1) == [(2, 2)] and len(alone) == 2
