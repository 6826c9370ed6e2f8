// Users, for admins: role change, disable, delete; hidden from everyone else.
import { apiCall, apiToken, check, env, run, until } from "./harness.mjs";

const adminEmail = env("ADMIN_EMAIL");
const adminPassword = env("ADMIN_PASSWORD");
const userEmail = env("USER_EMAIL");
const userPassword = env("USER_PASSWORD");
const targetEmail = env("OTHER_EMAIL");
const targetPassword = env("OTHER_PASSWORD");

await run("admin", async ({ page, shot, axe, login }) => {
  // A user sees no Users link, and the page does not exist for them.
  await login(userEmail, userPassword);
  check((await page.getByRole("link", { name: "Users" }).count()) === 0, "a user sees Users");
  await page.goto(page.url().replace(/#.*$/, "#/admin/users"));
  await page.getByRole("heading", { name: "Page not found" }).waitFor();
  check((await page.locator("table").count()) === 0, "a user sees a table of users");
  await page.getByRole("button", { name: "Log out" }).click();

  await login(adminEmail, adminPassword);
  await page.getByRole("link", { name: "Users" }).click();
  await page.getByRole("heading", { name: "Users", level: 1 }).waitFor();
  const row = page.locator(`tr[data-user="${targetEmail}"]`);
  await row.waitFor();
  check(
    (await page.locator(`tr[data-user="${adminEmail}"] th`).textContent()).endsWith("(you)"),
    "the admin's own row is not marked",
  );
  await axe("the users page");
  await shot("users");

  // Role change: the target's token from before stops working.
  const before = await apiToken(targetEmail, targetPassword);
  await page.getByLabel(`Role of ${targetEmail}`).selectOption("admin");
  await page.getByRole("status").filter({ hasText: `${targetEmail} is now an admin.` }).waitFor();
  check((await apiCall("GET", "/api/v1/users/me", { token: before })).status === 401,
    "the token from before the role change still works");
  const promoted = await apiCall("GET", "/api/v1/users/me", {
    token: await apiToken(targetEmail, targetPassword),
  });
  check(promoted.body.role === "admin", `the API says the role is ${promoted.body.role}`);
  await page.getByLabel(`Role of ${targetEmail}`).selectOption("user");
  await page.getByRole("status").filter({ hasText: `${targetEmail} is now a user.` }).waitFor();

  // Disable, then enable again.
  await page.getByRole("button", { name: `Disable ${targetEmail}` }).click();
  await page.getByRole("status").filter({ hasText: `${targetEmail} is disabled.` }).waitFor();
  await until(async () => (await row.locator("td").nth(2).textContent()) === "disabled",
    "the row does not say disabled");
  const refused = await apiCall("POST", "/api/v1/auth/token", {
    form: { username: targetEmail, password: targetPassword },
  });
  check(refused.status === 403, `a disabled account's login answered ${refused.status}`);
  await page.getByRole("button", { name: `Enable ${targetEmail}` }).click();
  await page.getByRole("status").filter({ hasText: `${targetEmail} is enabled.` }).waitFor();

  // The API's refusals show as they are: an admin cannot disable themself.
  await page.getByRole("button", { name: `Disable ${adminEmail}` }).click();
  // (Here the last admin, too.)
  await page
    .getByRole("alert")
    .filter({ hasText: /You cannot disable your own account|last active admin/ })
    .waitFor();
  check(
    (await page.locator(`tr[data-user="${adminEmail}"] td`).nth(2).textContent()) === "active",
    "the admin's own account is not active any more",
  );

  // Delete, after a confirmation.
  await page.getByRole("button", { name: `Delete ${targetEmail}` }).click();
  await page.getByRole("button", { name: "Confirm delete" }).click();
  await page.getByRole("status").filter({ hasText: `Deleted ${targetEmail}` }).waitFor();
  await until(async () => (await row.count()) === 0, "the deleted user is still listed");
  const gone = await apiCall("POST", "/api/v1/auth/token", {
    form: { username: targetEmail, password: targetPassword },
  });
  check(gone.status === 401, `a deleted account's login answered ${gone.status}`);
});
