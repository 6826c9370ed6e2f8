// An expired token and a revoked one both lead back to the login page.
import { apiCall, apiToken, baseUrl, check, env, run } from "./harness.mjs";

const email = env("USER_EMAIL");
const password = env("USER_PASSWORD");
const expired = env("EXPIRED_TOKEN");
const adminEmail = env("ADMIN_EMAIL");
const adminPassword = env("ADMIN_PASSWORD");

await run("session", async ({ page, shot, login }) => {
  // A token past its expiry, as a tab left open overnight would hold.
  await page.goto(`${baseUrl}/#/login`);
  await page.evaluate((token) => sessionStorage.setItem("fastship.token", token), expired);
  await page.goto(`${baseUrl}/#/items`);
  await page.reload();
  await page.getByRole("heading", { name: "Log in" }).waitFor();
  await page.getByRole("status").filter({ hasText: "Your session has ended." }).waitFor();
  check((await page.evaluate(() => sessionStorage.length)) === 0, "the expired token was kept");
  await shot("expired");

  // Revoked while in use: an admin disables the account, and the next request of
  // the open page gets 401.
  await login(email, password);
  const admin = await apiToken(adminEmail, adminPassword);
  const me = await page.evaluate(async () => {
    const response = await fetch("api/v1/users/me", {
      headers: { authorization: `Bearer ${sessionStorage.getItem("fastship.token")}` },
    });
    return response.json();
  });
  const disabled = await apiCall("PATCH", `/api/v1/users/${me.id}`, {
    token: admin,
    json: { is_active: false },
  });
  check(disabled.status === 200, `disabling answered ${disabled.status}`);
  await page.getByRole("link", { name: "Profile" }).click();
  await page.getByRole("heading", { name: "Profile", level: 1 }).waitFor();
  await page.getByRole("link", { name: "Items" }).click();
  await page.getByRole("heading", { name: "Log in" }).waitFor();
  await page.getByRole("status").filter({ hasText: "Your session has ended." }).waitFor();
  await page.getByLabel("Email", { exact: true }).fill(email);
  await page.getByLabel("Password", { exact: true }).fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("alert").filter({ hasText: "This account is disabled" }).waitFor();
});
