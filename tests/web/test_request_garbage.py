"""A read leaves no reference cycles behind: its executor, context, loaders and rows are freed
by reference counting when it ends, not by a pause of the cyclic collector later (app.py raises
the collector's thresholds on that basis)."""

from __future__ import annotations

import asyncio
import gc
from collections import Counter

from resolvers.viewer import Role, Viewer
from schema.root import schema
from tests.support.deployment import Api
from web.graphiql import DASHBOARD_QUERY
from web.state import RequestContext

LIST = """{ affiliates(first: 50) { totalCount edges { cursor node { id name upline { id }
  network { levels { level count deposits } } summaries(period: MONTHLY) { cpaEarned levels { rev } }
  referrals(first: 2) { totalCount nodes { referredAffiliate { id } } } } } } }"""


async def test_reads_leave_no_cyclic_garbage(api: Api) -> None:
    state = api.app.state.api
    queries = [(DASHBOARD_QUERY, {"id": "300"}), (LIST, {})]
    for viewer in (Viewer(Role.ADMIN, "admin"), Viewer(Role.AFFILIATE, "a", 300)):
        for query, variables in queries:  # warm: the documents' first parse and validation
            assert not (await schema.execute(query, variables, RequestContext.build(state, viewer))).errors
    # Connections that earlier tests closed finish closing (and are collected) before the window.
    for _ in range(20):
        await asyncio.sleep(0.1)
        if not gc.collect():
            break
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for viewer in (Viewer(Role.ADMIN, "admin"), Viewer(Role.AFFILIATE, "a", 300)):
            for query, variables in queries * 3:
                assert not (await schema.execute(query, variables, RequestContext.build(state, viewer))).errors
        gc.collect()
        garbage = Counter(type(o).__qualname__ for o in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert not garbage, garbage.most_common(10)
