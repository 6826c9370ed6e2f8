// Breaks the page on purpose, so that tests/web can see the harness fail: SELFCHECK=csp
// runs an inline script (the policy must block it and the flow must fail), SELFCHECK=axe
// adds an image without a text alternative (axe-core must fail the flow).
import { baseUrl, env, run } from "./harness.mjs";

const mode = env("SELFCHECK");

await run(`selfcheck-${mode}`, async ({ page, axe }) => {
  await page.goto(`${baseUrl}/`);
  await page.getByRole("heading", { name: "Log in" }).waitFor();
  if (mode === "csp") {
    // What an injected <script> would do; the browser must refuse to run it.
    await page.evaluate(() => {
      const style = document.createElement("style");
      style.textContent = "body { background: red }";
      document.head.append(style);
    });
    await page.waitForTimeout(200);
  } else {
    await page.evaluate(() => {
      const image = document.createElement("img");
      image.src = "data:image/gif;base64,R0lGODlhAQABAAAAACw=";
      document.querySelector("main")?.append(image);
    });
    await axe("a page with an image without a text alternative");
  }
});
