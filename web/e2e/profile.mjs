// The profile: details with field errors, a password change that ends the session.
import { check, env, run } from "./harness.mjs";

const email = env("USER_EMAIL");
const password = env("USER_PASSWORD");
const otherEmail = env("OTHER_EMAIL");
const newPassword = "a new and longer passphrase";

await run("profile", async ({ page, shot, axe, login, fieldError }) => {
  await login(email, password);
  await page.getByRole("link", { name: "Profile" }).click();
  await page.getByRole("heading", { name: "Profile", level: 1 }).waitFor();
  check((await page.getByLabel("Email", { exact: true }).inputValue()) === email, "the profile shows another email");

  await page.getByLabel("Full name", { exact: true }).fill("Ada Lovelace");
  await page.getByRole("button", { name: "Save profile" }).click();
  await page.getByRole("status").filter({ hasText: "Profile saved." }).waitFor();

  // Another account's email: the API's 409 shows at the email field. A new email needs
  // the password: its field appears once the email differs.
  await page.getByLabel("Email", { exact: true }).fill(otherEmail);
  await page.getByRole("button", { name: "Save profile" }).click();
  const needed = await fieldError("Password, to change the email");
  check(/needs your password/.test(needed), `a new email without the password says "${needed}"`);
  await page.getByLabel("Password, to change the email", { exact: true }).fill(password);
  await page.getByRole("button", { name: "Save profile" }).click();
  const taken = await fieldError("Email");
  check(/already exists/.test(taken), `taking another's email says "${taken}"`);
  await page.getByLabel("Email", { exact: true }).fill("no at sign");
  await page.getByRole("button", { name: "Save profile" }).click();
  const invalid = await fieldError("Email");
  check(/email/i.test(invalid) && invalid !== taken, `an invalid email says "${invalid}"`);
  await page.getByLabel("Email", { exact: true }).fill(email);
  check(
    (await page.getByLabel("Password, to change the email", { exact: true }).count()) === 0,
    "the password field stays after the email is back to the current one",
  );
  check(
    (await page.getByLabel("Email", { exact: true }).getAttribute("aria-invalid")) === null,
    "the email field is still marked invalid after it was corrected",
  );

  // Password: the wrong current one, a new one too short, two that differ.
  await page.getByLabel("Current password", { exact: true }).fill("not my password");
  await page.getByLabel("New password", { exact: true }).fill(newPassword);
  await page.getByLabel("New password, again", { exact: true }).fill(newPassword);
  await page.getByRole("button", { name: "Change password" }).click();
  const wrong = await fieldError("Current password");
  check(/current password is wrong/.test(wrong), `a wrong password says "${wrong}"`);
  await page.getByLabel("Current password", { exact: true }).fill(password);
  await page.getByLabel("New password", { exact: true }).fill("short");
  await page.getByLabel("New password, again", { exact: true }).fill("short");
  await page.getByRole("button", { name: "Change password" }).click();
  const short = await fieldError("New password");
  check(/at least 8/.test(short), `a short password says "${short}"`);
  await page.getByLabel("New password", { exact: true }).fill(newPassword);
  await page.getByLabel("New password, again", { exact: true }).fill(newPassword + "!");
  await page.getByRole("button", { name: "Change password" }).click();
  const differ = await fieldError("New password, again");
  check(/differ/.test(differ), `two different new passwords say "${differ}"`);
  await axe("the profile page with field errors");
  await shot("profile-errors");

  await page.getByLabel("New password, again", { exact: true }).fill(newPassword);
  await page.getByRole("button", { name: "Change password" }).click();
  await page.getByRole("heading", { name: "Log in" }).waitFor();
  await page.getByRole("status").filter({ hasText: "Your password has changed." }).waitFor();

  await page.getByLabel("Email", { exact: true }).fill(email);
  await page.getByLabel("Password", { exact: true }).fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("alert").filter({ hasText: "Incorrect email or password" }).waitFor();
  await login(email, newPassword);
  await page.getByRole("link", { name: "Profile" }).click();
  check(
    (await page.getByLabel("Full name", { exact: true }).inputValue()) === "Ada Lovelace",
    "the saved full name is gone",
  );
  await axe("the profile page");
  await shot("profile");
});
