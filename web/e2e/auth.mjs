// Sign up (with the API's field errors first), log out, a failed login, log in.
import { baseUrl, check, env, run, until } from "./harness.mjs";

const email = env("NEW_EMAIL");
const password = "correct horse battery";

await run("auth", async ({ page, shot, axe, fieldError }) => {
  await page.goto(`${baseUrl}/`);
  await page.getByRole("heading", { name: "Log in" }).waitFor();
  await axe("the login page");
  await shot("login");

  await page.getByRole("link", { name: "Sign up" }).click();
  await page.getByRole("heading", { name: "Sign up" }).waitFor();
  await page.getByLabel("Email", { exact: true }).fill("not-an-email");
  await page.getByLabel("Password", { exact: true }).fill("short");
  await page.getByRole("button", { name: "Create account" }).click();
  const emailError = await fieldError("Email");
  check(/email/i.test(emailError), `the email field says "${emailError}"`);
  const passwordError = await fieldError("Password");
  check(/at least 8/i.test(passwordError), `the password field says "${passwordError}"`);
  await axe("the signup page with field errors");
  await shot("signup-errors");

  await page.getByLabel("Email", { exact: true }).fill(email);
  await page.getByLabel("Full name (optional)", { exact: true }).fill("Grace Hopper");
  await page.getByLabel("Password", { exact: true }).fill(password);
  await page.getByRole("button", { name: "Create account" }).click();
  await page.getByRole("heading", { name: "Items", level: 1 }).waitFor();
  await page.getByText("No items yet").waitFor();
  check(
    (await page.getByRole("link", { name: "Users" }).count()) === 0,
    "a new user sees the admin's Users link",
  );

  // The same email again: the API's 409 shows at the email field.
  await page.getByRole("button", { name: "Log out" }).click();
  await page.getByRole("status").filter({ hasText: "You have logged out." }).waitFor();
  await page.getByRole("link", { name: "Sign up" }).click();
  await page.getByLabel("Email", { exact: true }).fill(email);
  await page.getByLabel("Password", { exact: true }).fill(password);
  await page.getByRole("button", { name: "Create account" }).click();
  const taken = await fieldError("Email");
  check(/already exists/.test(taken), `signing up twice says "${taken}"`);

  await page.getByRole("link", { name: "Log in" }).click();
  await page.getByLabel("Email", { exact: true }).fill(email);
  await page.getByLabel("Password", { exact: true }).fill("wrong password");
  await page.getByRole("button", { name: "Log in" }).click();
  const alert = page.getByRole("alert");
  await until(async () => /incorrect|invalid/i.test(await alert.textContent()), "no login error");
  check(
    (await page.evaluate(() => sessionStorage.length)) === 0,
    "a failed login stored something",
  );

  await page.getByLabel("Password", { exact: true }).fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("heading", { name: "Items", level: 1 }).waitFor();
  // A reload keeps the session (the token lives in the tab's sessionStorage).
  await page.reload();
  await page.getByRole("heading", { name: "Items", level: 1 }).waitFor();
  await page.getByRole("button", { name: "Log out" }).click();
  await page.getByRole("heading", { name: "Log in" }).waitFor();
  check(
    (await page.evaluate(() => sessionStorage.length)) === 0,
    "logging out left the token behind",
  );
  // After logging out the interface's pages lead to the login page.
  await page.goto(`${baseUrl}/#/items`);
  await page.getByRole("heading", { name: "Log in" }).waitFor();
});
