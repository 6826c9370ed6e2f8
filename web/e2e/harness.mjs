// Runs one browser flow against a running service: Debian's Chromium driven by
// playwright-core, a fresh profile each time. tests/web/test_browser.py starts the
// service and runs each flow file with `node`; a flow fails by throwing, and the
// process exits non-zero with the reason on stderr.
//
// Environment: FASTSHIP_URL (the service), ARTIFACTS_DIR (screenshots), CHROMIUM
// (default /usr/bin/chromium), and the accounts each flow names.
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

// Headless, no sandbox (the tests may run as root), and nothing that reaches the
// network on its own: the only server the browser talks to is the service on loopback.
const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

export function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`the environment variable ${name} is not set`);
  return value;
}

export const baseUrl = env("FASTSHIP_URL").replace(/\/$/, "");

export class FlowError extends Error {}

/** Fails the flow with `message` unless `condition` holds. */
export function check(condition, message) {
  if (!condition) throw new FlowError(message);
}

/** Waits until `probe()` returns a truthy value (or throws `message` after `timeout` ms). */
export async function until(probe, message, timeout = 15000) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await probe();
      if (last) return last;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new FlowError(`${message} (last seen: ${String(last)})`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The API called from the test process itself, not the browser. */
export async function apiCall(method, path, { token, json, form } = {}) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  let body;
  if (json !== undefined) {
    headers["content-type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = new URLSearchParams(form);
  }
  const response = await fetch(`${baseUrl}${path}`, { method, headers, body });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

export async function apiToken(email, password) {
  const { status, body } = await apiCall("POST", "/api/v1/auth/token", {
    form: { username: email, password },
  });
  check(status === 200, `API login of ${email} answered ${status}: ${JSON.stringify(body)}`);
  return body.access_token;
}

/**
 * Runs `flow({ page, shot, axe, login, fieldError })` in a fresh browser profile.
 * Any Content-Security-Policy violation, uncaught page error or 5xx answer fails the
 * flow, whatever the flow itself checks.
 */
export async function run(name, flow) {
  const artifacts = join(env("ARTIFACTS_DIR"), name);
  mkdirSync(artifacts, { recursive: true });
  const profile = mkdtempSync(join(tmpdir(), "fastship-chromium-"));
  const problems = [];
  const started = Date.now();
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
      headless: true,
      args: CHROMIUM_FLAGS,
      viewport: { width: 1200, height: 800 },
      locale: "en-US",
      timezoneId: "UTC",
    });
    // Reported from inside the page: the browser enforced the policy and blocked something.
    await context.addInitScript(() => {
      document.addEventListener("securitypolicyviolation", (event) => {
        console.error(`CSP violation: ${event.violatedDirective} blocked ${event.blockedURI}`);
      });
    });
    const page = context.pages()[0] ?? (await context.newPage());
    // Generous: on a loaded machine a step can take seconds; a passing step waits no longer.
    page.setDefaultTimeout(15000);
    page.on("console", (message) => {
      const text = message.text();
      if (/CSP violation|Content Security Policy|Trusted Type/i.test(text)) problems.push(text);
    });
    page.on("pageerror", (error) => problems.push(`uncaught error in the page: ${error.message}`));
    page.on("response", (response) => {
      if (response.status() >= 500) problems.push(`${response.status()} from ${response.url()}`);
    });

    let shots = 0;
    const helpers = {
      page,
      /** A full-page screenshot in ARTIFACTS_DIR/<flow>/NN-<label>.png. */
      async shot(label) {
        shots += 1;
        const file = join(artifacts, `${String(shots).padStart(2, "0")}-${label}.png`);
        await page.screenshot({ path: file, fullPage: true });
        return file;
      },
      /** axe-core on the current page: fails on any serious or critical violation. */
      async axe(label) {
        await page.evaluate(AXE_SOURCE);
        const results = await page.evaluate(() =>
          // biome-ignore lint: axe is the global the script above defined
          window.axe.run(document, { resultTypes: ["violations"] }),
        );
        const bad = results.violations.filter((v) => ["serious", "critical"].includes(v.impact));
        const lines = bad.map(
          (v) =>
            `${v.impact} ${v.id}: ${v.help} at ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`,
        );
        check(bad.length === 0, `accessibility problems on ${label}:\n  ${lines.join("\n  ")}`);
        return results.violations.length;
      },
      async login(email, password) {
        await page.goto(`${baseUrl}/#/login`);
        await page.getByLabel("Email", { exact: true }).fill(email);
        await page.getByLabel("Password", { exact: true }).fill(password);
        await page.getByRole("button", { name: "Log in" }).click();
        await page.getByRole("heading", { name: "Items", level: 1 }).waitFor();
      },
      /** The message shown under the field labelled `label`, once it is marked invalid. */
      async fieldError(label) {
        const field = page.getByLabel(label, { exact: true });
        await until(
          async () => (await field.getAttribute("aria-invalid")) === "true",
          `the field "${label}" is not marked invalid`,
        );
        const id = await field.getAttribute("aria-describedby");
        check(id, `the field "${label}" has no message`);
        return (await page.locator(`[id="${id}"]`).textContent()).trim();
      },
    };
    await flow(helpers);
    check(problems.length === 0, `the browser reported:\n  ${problems.join("\n  ")}`);
    console.log(
      JSON.stringify({ flow: name, ok: true, seconds: (Date.now() - started) / 1000, shots }),
    );
  } catch (error) {
    if (context) {
      const page = context.pages()[0];
      if (page) {
        await page
          .screenshot({ path: join(artifacts, "failure.png"), fullPage: true })
          .catch(() => {});
      }
    }
    const extra = problems.length ? `\nthe browser reported:\n  ${problems.join("\n  ")}` : "";
    console.error(`flow ${name} failed: ${error instanceof FlowError ? error.message : error.stack}${extra}`);
    process.exitCode = 1;
  } finally {
    if (context) await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}
