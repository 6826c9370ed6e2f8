// Items: pages, search, sort, create with field errors, edit, delete.
import { apiCall, apiToken, check, env, run, until } from "./harness.mjs";

const email = env("USER_EMAIL");
const password = env("USER_PASSWORD");

// Twelve items through the API, so that the list has two pages of ten.
const token = await apiToken(email, password);
for (let n = 1; n <= 12; n += 1) {
  const { status } = await apiCall("POST", "/api/v1/items", {
    token,
    json: {
      name: `Mug ${String(n).padStart(2, "0")}`,
      description: n % 3 === 0 ? "Stoneware, blue glaze" : "Porcelain",
      price: `${n}.50`,
      tags: ["kitchen"],
    },
  });
  check(status === 201, `seeding item ${n} answered ${status}`);
}

const rowNames = (page) =>
  page.locator("tbody tr th[scope=row]").evaluateAll((cells) => cells.map((c) => c.textContent));

await run("items", async ({ page, shot, axe, login, fieldError }) => {
  await login(email, password);
  await page.getByText("1–10 of 12 · page 1 of 2").waitFor();
  check((await rowNames(page)).length === 10, "page 1 does not show ten items");
  await page.getByRole("button", { name: "Next" }).click();
  await page.getByText("11–12 of 12 · page 2 of 2").waitFor();
  check(page.url().endsWith("#/items?page=2"), `page 2 is not in the URL: ${page.url()}`);
  check(
    await page.getByRole("button", { name: "Next" }).isDisabled(),
    "Next is enabled on the last page",
  );
  await page.getByRole("button", { name: "Previous" }).click();
  await page.getByText("1–10 of 12 · page 1 of 2").waitFor();

  // Sort by price, highest first.
  await page.getByLabel("Sort by", { exact: true }).selectOption({ label: "Price, highest first" });
  await until(async () => (await rowNames(page))[0] === "Mug 12", "the most expensive is not first");
  await page.getByLabel("Sort by", { exact: true }).selectOption({ label: "Name, A to Z" });
  await until(async () => (await rowNames(page))[0] === "Mug 01", "Mug 01 is not first by name");

  // Search: four of the twelve are stoneware.
  await page.getByRole("searchbox", { name: "Search items" }).fill("stoneware");
  await page.getByRole("button", { name: "Search" }).click();
  await page.getByText("1–4 of 4 · page 1 of 1").waitFor();
  check(
    JSON.stringify(await rowNames(page)) === JSON.stringify(["Mug 03", "Mug 06", "Mug 09", "Mug 12"]),
    `the search found ${await rowNames(page)}`,
  );
  await page.getByRole("searchbox", { name: "Search items" }).fill("no such thing");
  await page.getByRole("button", { name: "Search" }).click();
  await page.getByText("No items match “no such thing”.").waitFor();
  await page.getByRole("searchbox", { name: "Search items" }).fill("");
  await page.getByRole("button", { name: "Search" }).click();
  await page.getByText("1–10 of 12 · page 1 of 2").waitFor();
  await page.getByLabel("Sort by", { exact: true }).selectOption({ label: "Newest first" });
  await until(async () => (await rowNames(page))[0] === "Mug 12", "Mug 12 is not the newest");

  // Create: the API's field errors show at their fields, then a valid item saves.
  await page.getByRole("button", { name: "New item" }).click();
  await page.getByRole("heading", { name: "New item" }).waitFor();
  await page.getByLabel("Name", { exact: true }).fill("   ");
  await page.getByLabel("Price", { exact: true }).fill("-3");
  await page.getByLabel("Tags", { exact: true }).fill("ok, " + "x".repeat(40));
  await page.getByRole("button", { name: "Save" }).click();
  const nameError = await fieldError("Name");
  check(/at least 1 character/.test(nameError), `the name field says "${nameError}"`);
  const priceError = await fieldError("Price");
  check(/greater than or equal to 0/.test(priceError), `the price field says "${priceError}"`);
  const tagsError = await fieldError("Tags");
  check(/at most 32 characters/.test(tagsError), `the tags field says "${tagsError}"`);
  check(
    (await page.getByLabel("Description", { exact: true }).getAttribute("aria-invalid")) === null,
    "the description is marked invalid though the API did not name it",
  );
  await axe("the item form with field errors");
  await shot("item-field-errors");

  await page.getByLabel("Name", { exact: true }).fill("Teapot");
  await page.getByLabel("Description", { exact: true }).fill("Cast iron, 1.2 l");
  await page.getByLabel("Price", { exact: true }).fill("48.00");
  await page.getByLabel("Tags", { exact: true }).fill("kitchen, gift");
  await page.getByRole("button", { name: "Save" }).click();
  await page.getByRole("status").filter({ hasText: "Saved “Teapot”." }).waitFor();
  await page.getByText("1–10 of 13 · page 1 of 2").waitFor();
  check((await rowNames(page))[0] === "Teapot", "the new item is not first (newest first)");
  await axe("the items page");
  await shot("items");

  // Edit.
  await page.getByRole("button", { name: "Edit Teapot" }).click();
  await page.getByRole("heading", { name: "Edit “Teapot”" }).waitFor();
  check((await page.getByLabel("Price", { exact: true }).inputValue()) === "48.00", "the form lost the price");
  await page.getByLabel("Price", { exact: true }).fill("abc");
  await page.getByRole("button", { name: "Save" }).click();
  const badPrice = await fieldError("Price");
  check(/decimal|number/i.test(badPrice), `a price of "abc" says "${badPrice}"`);
  await page.getByLabel("Name", { exact: true }).fill("Teapot, large");
  await page.getByLabel("Price", { exact: true }).fill("52.5");
  await page.getByRole("button", { name: "Save" }).click();
  await page.getByRole("status").filter({ hasText: "Saved “Teapot, large”." }).waitFor();
  const row = page.locator('tr[data-item="Teapot, large"]');
  await until(async () => (await row.locator("td.number").textContent()) === "52.50", "no new price");

  // Delete, after a confirmation.
  await page.getByRole("button", { name: "Delete Teapot, large" }).click();
  await page.getByRole("button", { name: "Keep" }).click();
  check((await row.count()) === 1, "Keep deleted the item");
  await page.getByRole("button", { name: "Delete Teapot, large" }).click();
  await page.getByRole("button", { name: "Confirm delete" }).click();
  await page.getByRole("status").filter({ hasText: "Deleted “Teapot, large”." }).waitFor();
  await page.getByText("1–10 of 12 · page 1 of 2").waitFor();
  check((await row.count()) === 0, "the deleted item is still listed");
  const { body } = await apiCall("GET", "/api/v1/items?q=Teapot", { token });
  check(body.total === 0, "the API still has the deleted item");

  // A page past the end (a bookmark, or the last item of the last page deleted)
  // shows the last page.
  await page.goto(page.url().replace(/#.*$/, "#/items?page=9"));
  await page.getByText("11–12 of 12 · page 2 of 2").waitFor();
});
