"""GraphiQL in a real browser: Debian's headless Chromium (installed here when missing), driven
by playwright-core (npm; it downloads no browser), against the app on a real uvicorn socket.

Every request to a host other than the server is aborted and recorded: the page must work
offline. An analyst opens the page, sees the hint, pastes a bad token (refused, with the server's reason), then a good one, sees the schema load
without a manual refetch, runs the dashboard for affiliate 300 and sees the database's figure; reloaded, the page keeps
the token; forgotten and typed into GraphiQL's Headers pane instead, the schema loads again.
On failure the browser's screenshot is at /tmp/graphiql-browser-failure.png.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from decimal import Decimal
from typing import Any

from tests.support.deployment import Deployment, rows, token
from tests.support.live import uvicorn_serving
from tests.support.tools import debian_packages, npm_packages, run_node

PLAYWRIGHT = "playwright-core@1.65.2"
SCREENSHOT = "/tmp/graphiql-browser-failure.png"

# argv: server URL, chromium path, screenshot path; env FATURE_GRAPHIQL_TOKEN: the analyst's token.
# Prints one JSON object with what the browser saw; exits 1 (after a screenshot) on a failed step.
SCRIPT = r"""
import { rmSync } from "node:fs";
import { chromium } from "playwright-core";

const [server, executablePath, screenshot] = process.argv.slice(2);
rmSync(screenshot, { force: true }); // no stale screenshot of an earlier run
const origin = new URL(server).origin;
const seen = { blocked: [], requests: [], consoleErrors: [], pageErrors: [], postsBeforeToken: 0 };
let tokenSet = false;

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: process.getuid && process.getuid() === 0 ? ["--no-sandbox"] : [],
});
const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
// Nothing leaves the server: any other host is aborted and recorded.
await context.route("**/*", (route) => {
  const url = route.request().url();
  if (url.startsWith("data:") || new URL(url).origin === origin) return route.continue();
  seen.blocked.push(url);
  return route.abort("blockedbyclient");
});
const page = await context.newPage();
page.on("request", (request) => {
  if (request.url().startsWith("data:")) return;
  if (request.method() === "POST" && !tokenSet) seen.postsBeforeToken += 1;
});
page.on("response", (response) => {
  if (!response.url().startsWith("data:")) {
    seen.requests.push({ method: response.request().method(), url: response.url(), status: response.status() });
  }
});
page.on("console", (message) => { if (message.type() === "error") seen.consoleErrors.push(message.text()); });
page.on("pageerror", (error) => seen.pageErrors.push(String(error)));

const editorValue = (selector) => page.evaluate((s) => {
  const element = document.querySelector(s);
  return element && element.CodeMirror ? element.CodeMirror.getValue() : null;
}, selector);

let step = "open the page";
try {
  await page.goto(`${server}/graphql`, { waitUntil: "networkidle" });
  seen.title = await page.title();
  step = "GraphiQL renders";
  await page.waitForSelector(".graphiql-container", { timeout: 30000 });
  await page.waitForFunction(() => document.getElementById("fature-hint").dataset.state === "missing");
  seen.hintBefore = await page.textContent("#fature-hint");
  seen.queryEditor = await editorValue(".graphiql-query-editor .CodeMirror");
  seen.variablesBefore = await editorValue(".graphiql-editor-tool .CodeMirror");
  step = "docs before a token";
  await page.click('button[aria-label="Show Documentation Explorer"]');
  await page.waitForSelector(".graphiql-doc-explorer");
  await page.waitForFunction(() => {
    const element = document.querySelector(".result-window .CodeMirror");
    return element && element.CodeMirror && element.CodeMirror.getValue().includes("No token yet");
  }, null, { timeout: 30000 });
  seen.resultBefore = await editorValue(".result-window .CodeMirror");

  step = "a bad token is refused, with the hint";
  tokenSet = true;
  await page.fill("#fature-token", "not-a-token");
  await page.click('#fature-token-bar button[type="submit"]');
  await page.waitForFunction(() => document.getElementById("fature-hint").dataset.state === "refused",
                             null, { timeout: 30000 });
  seen.hintRefused = await page.textContent("#fature-hint");

  step = "paste the token";
  await page.fill("#fature-token", process.env.FATURE_GRAPHIQL_TOKEN);
  await page.click('#fature-token-bar button[type="submit"]');
  step = "the schema loads by itself";
  await page.waitForFunction(() => document.getElementById("fature-hint").dataset.state === "ready",
                             null, { timeout: 30000 });
  seen.hintAfter = await page.textContent("#fature-hint");
  await page.waitForSelector(".graphiql-doc-explorer-root-type", { timeout: 30000 });
  seen.docsAfter = await page.textContent(".graphiql-doc-explorer");
  seen.storedToken = await page.evaluate(() => window.localStorage.getItem("fature.graphiql.token"));

  step = "set the variables";
  await page.click(".graphiql-editor-tool .CodeMirror");
  await page.keyboard.press("Control+A");
  await page.keyboard.insertText('{"id": "300"}');
  seen.variablesAfter = await editorValue(".graphiql-editor-tool .CodeMirror");

  step = "run the dashboard";
  const answered = page.waitForResponse((r) => r.request().method() === "POST" &&
                                        (r.request().postData() || "").includes("query Dashboard"));
  await page.click(".graphiql-execute-button");
  await answered;
  await page.waitForFunction(() => {
    const element = document.querySelector(".result-window .CodeMirror");
    return element && element.CodeMirror && element.CodeMirror.getValue().includes("totalCpaEarned");
  }, null, { timeout: 30000 });
  seen.result = JSON.parse(await editorValue(".result-window .CodeMirror"));

  step = "reload: the token is kept in the browser";
  await page.reload({ waitUntil: "networkidle" });
  await page.waitForFunction(() => document.getElementById("fature-hint").dataset.state === "ready",
                             null, { timeout: 30000 });
  seen.hintReloaded = await page.textContent("#fature-hint");

  step = "forget the token, then set it in the Headers pane instead";
  await page.click("#fature-token-forget");
  await page.waitForFunction(() => document.getElementById("fature-hint").dataset.state === "missing");
  seen.storedAfterForget = await page.evaluate(() => window.localStorage.getItem("fature.graphiql.token"));
  await page.click('.graphiql-editor-tools button:has-text("Headers")');
  const headers = ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror";
  await page.click(headers);
  await page.keyboard.press("Control+A");
  await page.keyboard.insertText(JSON.stringify({ Authorization: `Bearer ${process.env.FATURE_GRAPHIQL_TOKEN}` }));
  await page.waitForFunction(() => document.getElementById("fature-hint").dataset.state === "ready",
                             null, { timeout: 30000 });
  seen.hintFromHeaders = await page.textContent("#fature-hint");
  seen.ok = true;
} catch (error) {
  seen.ok = false;
  seen.failedStep = step;
  seen.error = String(error);
  await page.screenshot({ path: screenshot, fullPage: true }).catch(() => {});
}
await browser.close();
console.log(JSON.stringify(seen));
process.exit(seen.ok ? 0 : 1);
"""


def chromium_path() -> str:
    debian_packages({"chromium": "chromium"})
    path = shutil.which("chromium")
    assert path is not None, "chromium is not on PATH after installing Debian's chromium package"
    return path


async def test_an_analyst_runs_the_dashboard_in_graphiql_offline(deployment: Deployment) -> None:
    executable = chromium_path()
    node_modules = npm_packages(PLAYWRIGHT)
    analyst = token(deployment.settings, "analyst")
    expected = (await rows(deployment.robust_url,
                           "SELECT name, total_cpa_earned FROM affiliates WHERE affiliate_id = 300"))[0]
    async with uvicorn_serving(deployment.settings, deployment.robust_url, log_level="warning") as url:
        # The browser runs in a thread: the event loop keeps serving it.
        done = await asyncio.to_thread(run_node, SCRIPT, node_modules, url, executable, SCREENSHOT,
                                       timeout=240, env={"FATURE_GRAPHIQL_TOKEN": analyst})
    assert done.stdout.strip(), f"the browser script printed nothing:\n{done.stderr[-3000:]}"
    seen: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["ok"], (f"step {seen.get('failedStep')!r} failed: {seen.get('error')}\n"
                        f"screenshot: {SCREENSHOT}\nseen: {json.dumps(seen, indent=1)[:4000]}")

    # Offline: the page asked no other host for anything, and every asset loaded.
    assert seen["blocked"] == []
    assert all(r["url"].startswith(url) for r in seen["requests"])
    assert [r for r in seen["requests"] if r["status"] != 200 and r["method"] == "GET"] == []
    assets = {r["url"].rsplit("/", 1)[-1] for r in seen["requests"] if "/graphiql/" in r["url"]}
    assert {"react-18.3.1.production.min.js", "react-dom-18.3.1.production.min.js", "graphiql-3.9.0.min.js",
            "graphiql-3.9.0.min.css", "fature-graphiql.js", "fature-graphiql.css"} <= assets
    # No script error, no refused integrity check, no Content-Security-Policy violation.
    # (Chromium logs each refused request: the bad token's 401s and nothing else.)
    refusals = [r for r in seen["requests"] if r["status"] == 401]
    assert seen["pageErrors"] == []
    assert seen["consoleErrors"] == ["Failed to load resource: the server responded with a status of 401 "
                                     "(Unauthorized)"] * len(refusals)

    # Before the token: the hint, and not a request to the server.
    assert "./dev token --role analyst" in seen["hintBefore"]
    assert seen["postsBeforeToken"] == 0
    # GraphiQL's own pane says why too, not a bare "Error fetching schema".
    assert "./dev token --role analyst" in json.loads(seen["resultBefore"])["errors"][0]["message"]
    assert "query Dashboard($id: ID!)" in seen["queryEditor"]
    assert json.loads(seen["variablesBefore"]) == {"id": "AFFILIATE_ID"}

    # A bad token: the server's reason and the hint again.
    assert "refused the token" in seen["hintRefused"] and "./dev token --role analyst" in seen["hintRefused"]
    assert refusals and all(r["method"] == "POST" for r in refusals)
    assert [r["status"] for r in seen["requests"] if r["method"] == "POST"][:1] == [401]

    # The token: kept in the browser, and the schema came without a manual refetch.
    assert seen["storedToken"] == analyst
    assert "Token accepted" in seen["hintAfter"]
    assert "Query" in seen["docsAfter"] and "Error fetching schema" not in seen["docsAfter"]
    assert json.loads(seen["variablesAfter"]) == {"id": "300"}

    # The dashboard's figures are the database's.
    affiliate = seen["result"]["data"]["affiliate"]
    assert affiliate["name"] == expected["name"]
    assert Decimal(affiliate["totalCpaEarned"]) == expected["total_cpa_earned"]
    assert "errors" not in seen["result"]
    assert "Token accepted" in seen["hintReloaded"]
    # Forgotten, then pasted into the Headers pane: the schema comes again, by itself too.
    assert seen["storedAfterForget"] is None
    assert "Token accepted" in seen["hintFromHeaders"]
