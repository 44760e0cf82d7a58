"""graphql-http's ``serverAudits`` (the npm package itself, run by Node) against the app on a real
socket: every audit of the GraphQL-over-HTTP spec passes, none warns or errs."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

from tests.support.deployment import Deployment, token
from tests.support.live import uvicorn_serving
from tests.support.tools import npm_packages, run_node

GRAPHQL_HTTP = ("graphql@16.11.0", "graphql-http@1.22.4")

# Each audit with the server's answer when it did not pass (status, content type, body start).
AUDIT = """
import { serverAudits } from 'graphql-http';
const [url, token] = process.argv.slice(2);
const fetchFn = (input, init = {}) => {
  const headers = new Headers(init.headers);
  headers.set('authorization', `Bearer ${token}`);
  return fetch(input, { ...init, headers });
};
const results = [];
for (const audit of serverAudits({ url, fetchFn })) {
  const result = await audit.fn();
  const entry = { id: result.id, name: result.name, status: result.status };
  if (result.status !== 'ok') {
    entry.reason = result.reason;
    try {
      entry.answer = `${result.response.status} ${result.response.headers.get('content-type')} `
        + (await result.response.text()).slice(0, 300);
    } catch (e) { entry.answer = String(e); }
  }
  results.push(entry);
}
console.log(JSON.stringify(results));
"""


async def test_graphql_http_server_audits_pass_without_warnings(deployment: Deployment) -> None:
    modules = npm_packages(*GRAPHQL_HTTP)
    settings = deployment.settings.model_copy(update={
        "rate_limit_enabled": True, "rate_limit": "100000/minute", "rate_limit_burst": "10000/second",
        "cache_enabled": True,
    })
    async with uvicorn_serving(settings, deployment.robust_url, log_level="warning") as url:
        done = await run_audits(modules, f"{url}/graphql", token(settings, "admin"))
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    assert len(results) > 40, results  # the whole suite ran
    failing = [f"{r['id']} {r['status'].upper()} {r['name']}: {r['reason']} (answer: {r.get('answer')})"
               for r in results if r["status"] != "ok"]
    assert not failing, "\n".join(failing)


async def run_audits(modules: Path, url: str, bearer: str) -> subprocess.CompletedProcess[str]:
    """The audits in Node, off the event loop (the server under test runs on it)."""
    return await asyncio.to_thread(run_node, AUDIT, modules, url, bearer)
