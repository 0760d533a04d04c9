// Grade synthetic responses with the real MDN HTTP Observatory (the npm package pinned in
// package.json), without network: the package's own scan() runs (every test, its scoring
// and grade chart), with its retriever module swapped for one that hands back responses
// built here the way the retriever builds them (Node's header parsing, axios' header
// object, the same tough-cookie jar the retriever's cookie agent fills).
//
// stdin: a JSON array of cases
//   {url, status, headers: [[name, value], ...], body, preflight: [[name, value], ...] | null,
//    http_route: [[url, status], ...] | null}
// stdout: a JSON array, one {score, grade, algorithm_version, tests: {name: {result, pass,
//   modifier}}} or {error} per case.
import http from "node:http";
import { register } from "node:module";
import { readFileSync } from "node:fs";
import { AxiosHeaders } from "axios";
import { CookieJar } from "tough-cookie";

register("./retriever-hook.mjs", import.meta.url);

const observatory = "@mdn/mdn-http-observatory/src";
const { scan } = await import(`${observatory}/scanner/index.js`);
const { Requests, HTML_TYPES } = await import(`${observatory}/types.js`);
const { parseHttpEquivHeaders } = await import(`${observatory}/retriever/utils.js`);

/** The headers object Node's HTTP client builds from raw lines (repeated lines joined
 * with ", ", Set-Cookie kept as a list, a repeated Content-Type dropped...), wrapped as
 * axios wraps it. */
function nodeHeaders(lines) {
  const message = new http.IncomingMessage(null);
  message._addHeaderLines(lines.flat(), lines.length * 2);
  return { raw: message.headers, axios: new AxiosHeaders(message.headers) };
}

function requestsFor(c) {
  const url = new URL(c.url);
  const requests = new Requests(url.hostname);
  const { raw, axios } = nodeHeaders(c.headers);
  const jar = new CookieJar();
  // http-cookie-agent's saveCookiesFromHeader, for every response of the session
  for (const cookie of [raw["set-cookie"] ?? []].flat()) {
    jar.setCookieSync(cookie, c.url, { ignoreError: true });
  }
  const auto = { status: c.status, headers: axios, data: c.body, verified: true };
  requests.responses.auto = auto;
  requests.responses.https = url.protocol === "https:" ? auto : null;
  if (c.http_route) {
    const route = c.http_route.map(([href, status]) => ({ url: new URL(href), status }));
    requests.responses.http = { status: route[0].status, headers: {}, verified: true };
    requests.responses.httpRedirects = route;
    requests.responses.httpsRedirects = route;
  }
  requests.session = { url, jar, redirectHistory: [] };
  requests.resources.path = c.body;
  if (c.preflight) {
    // `request` is Node's ClientRequest, which has no `headers` property: the CORS test
    // reads the Origin it sent from there.
    const preflight = nodeHeaders(c.preflight).axios;
    requests.responses.cors = { status: 200, headers: preflight, request: {}, verified: true };
  }
  // the retriever's own last step
  auto.httpEquiv =
    HTML_TYPES.has(auto.headers["content-type"]?.split(";")[0]) && requests.resources.path
      ? parseHttpEquivHeaders(requests.resources.path, url.href)
      : new Map();
  return requests;
}

const cases = JSON.parse(readFileSync(0, "utf8"));
const out = [];
for (const c of cases) {
  try {
    globalThis.__bastionRequests = requestsFor(c);
    const result = await scan(new URL(c.url).hostname);
    const tests = {};
    for (const [name, t] of Object.entries(result.tests)) {
      tests[name] = { result: t.result, pass: t.pass, modifier: t.scoreModifier };
    }
    out.push({
      score: result.scan.score,
      grade: result.scan.grade,
      algorithm_version: result.scan.algorithmVersion,
      tests,
    });
  } catch (error) {
    out.push({ error: String(error?.stack ?? error) });
  }
}
process.stdout.write(JSON.stringify(out));
