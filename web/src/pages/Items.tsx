import { useEffect, useState } from "preact/hooks";
import { api, problemOf, type Item, type ItemSort, type User } from "../api/client";
import { Alert, FIX_FIELDS, Field, Pager, Status, useFieldErrors } from "../components";
import { navigate, type Route } from "../router";

const PAGE_SIZE = 10;

const SORTS: { value: ItemSort; label: string }[] = [
  { value: "-created_at", label: "Newest first" },
  { value: "created_at", label: "Oldest first" },
  { value: "name", label: "Name, A to Z" },
  { value: "-name", label: "Name, Z to A" },
  { value: "price", label: "Price, lowest first" },
  { value: "-price", label: "Price, highest first" },
  { value: "-updated_at", label: "Recently changed" },
];

interface Page {
  items: Item[];
  total: number;
  limit: number;
  offset: number;
}

function readQuery(route: Route) {
  const sort = route.params.get("sort");
  return {
    q: route.params.get("q") ?? "",
    sort: (SORTS.some((s) => s.value === sort) ? sort : "-created_at") as ItemSort,
    page: Math.max(1, Number.parseInt(route.params.get("page") ?? "1", 10) || 1),
  };
}

export function Items({ route, me }: { route: Route; me: User }) {
  const query = readQuery(route);
  const [search, setSearch] = useState(query.q);
  const [page, setPage] = useState<Page | null>(null);
  const [message, setMessage] = useState<string | null>(null);
  const [status, setStatus] = useState("");
  const [editing, setEditing] = useState<Item | "new" | null>(null);
  const [confirming, setConfirming] = useState<string | null>(null);
  const [reload, setReload] = useState(0);

  useEffect(() => setSearch(query.q), [query.q]);

  useEffect(() => {
    let current = true;
    api
      .GET("/api/v1/items", {
        params: {
          query: {
            q: query.q || undefined,
            sort: query.sort,
            limit: PAGE_SIZE,
            offset: (query.page - 1) * PAGE_SIZE,
          },
        },
      })
      .then(({ data, error, response }) => {
        if (!current) return;
        if (data && data.items.length === 0 && data.total > 0) {
          // Past the last page (its last item was deleted): show the last page.
          go({ page: Math.ceil(data.total / PAGE_SIZE) });
        } else if (data) {
          setPage(data);
          setMessage(null);
        } else setMessage(problemOf(error, response.status).message);
      });
    return () => {
      current = false;
    };
  }, [query.q, query.sort, query.page, reload]);

  const go = (changes: Partial<typeof query>) => {
    const next = { ...query, ...changes };
    navigate("/items", {
      q: next.q || undefined,
      sort: next.sort === "-created_at" ? undefined : next.sort,
      page: next.page > 1 ? next.page : undefined,
    });
  };

  async function remove(item: Item) {
    const { error, response } = await api.DELETE("/api/v1/items/{item_id}", {
      params: { path: { item_id: item.id } },
    });
    setConfirming(null);
    if (error) setMessage(problemOf(error, response.status).message);
    else {
      setStatus(`Deleted “${item.name}”.`);
      setReload((n) => n + 1);
    }
  }

  return (
    <section>
      <hgroup>
        <h1>Items</h1>
        <p>{me.role === "admin" ? "Everyone's items (you are an admin)." : "Your items."}</p>
      </hgroup>
      <form
        role="search"
        onSubmit={(e) => {
          e.preventDefault();
          go({ q: search.trim(), page: 1 });
        }}
      >
        <input
          type="search"
          name="q"
          aria-label="Search items"
          placeholder="Search name or description"
          value={search}
          onInput={(e) => setSearch(e.currentTarget.value)}
        />
        <button type="submit">Search</button>
      </form>
      <div class="toolbar">
        <div class="sort">
          <label for="sort">Sort by</label>
          <select
            id="sort"
            name="sort"
            value={query.sort}
            onChange={(e) => go({ sort: e.currentTarget.value as ItemSort, page: 1 })}
          >
            {SORTS.map((s) => (
              <option value={s.value} key={s.value}>
                {s.label}
              </option>
            ))}
          </select>
        </div>
        <button type="button" onClick={() => setEditing("new")} disabled={editing !== null}>
          New item
        </button>
      </div>
      {editing && (
        <ItemEditor
          item={editing === "new" ? null : editing}
          onDone={(saved) => {
            setEditing(null);
            if (saved) {
              setStatus(`Saved “${saved.name}”.`);
              setReload((n) => n + 1);
            }
          }}
        />
      )}
      <Status>{status}</Status>
      <Alert>{message}</Alert>
      {page === null ? (
        <p aria-busy="true">Loading items…</p>
      ) : page.items.length === 0 ? (
        <p>{query.q ? `No items match “${query.q}”.` : "No items yet: create the first one."}</p>
      ) : (
        <>
          <div class="overflow-auto">
            <table class="striped">
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Description</th>
                  <th scope="col" class="number">
                    Price
                  </th>
                  <th scope="col">Tags</th>
                  <th scope="col">
                    <span class="visually-hidden">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {page.items.map((item) => (
                  <tr key={item.id} data-item={item.name}>
                    <th scope="row">{item.name}</th>
                    <td>{item.description}</td>
                    <td class="number">{item.price}</td>
                    <td>{item.tags.join(", ")}</td>
                    <td class="actions">
                      {confirming === item.id ? (
                        <>
                          <button type="button" class="danger" onClick={() => remove(item)}>
                            Confirm delete
                          </button>
                          <button
                            type="button"
                            class="secondary outline"
                            onClick={() => setConfirming(null)}
                          >
                            Keep
                          </button>
                        </>
                      ) : (
                        <>
                          <button
                            type="button"
                            class="secondary outline"
                            aria-label={`Edit ${item.name}`}
                            onClick={() => setEditing(item)}
                          >
                            Edit
                          </button>
                          <button
                            type="button"
                            class="secondary outline"
                            aria-label={`Delete ${item.name}`}
                            onClick={() => setConfirming(item.id)}
                          >
                            Delete
                          </button>
                        </>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <Pager
            label="Item pages"
            offset={page.offset}
            limit={page.limit}
            total={page.total}
            onPage={(n) => go({ page: n })}
          />
        </>
      )}
    </section>
  );
}

function ItemEditor({ item, onDone }: { item: Item | null; onDone: (saved: Item | null) => void }) {
  const [name, setName] = useState(item?.name ?? "");
  const [description, setDescription] = useState(item?.description ?? "");
  const [price, setPrice] = useState(item?.price ?? "");
  const [tags, setTags] = useState(item?.tags.join(", ") ?? "");
  const { fields, setFields, edited } = useFieldErrors();
  const [message, setMessage] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: Event) {
    event.preventDefault();
    setBusy(true);
    const body = {
      name,
      description: description || null,
      // Sent as typed: the API checks the amount and says what is wrong with it.
      price: price.trim(),
      tags: tags
        .split(",")
        .map((t) => t.trim())
        .filter(Boolean),
    };
    const result = item
      ? await api.PATCH("/api/v1/items/{item_id}", {
          params: { path: { item_id: item.id } },
          body,
        })
      : await api.POST("/api/v1/items", { body });
    setBusy(false);
    if (result.data) {
      onDone(result.data);
      return;
    }
    const problem = problemOf(result.error, result.response.status);
    setFields(problem.fields);
    setMessage(Object.keys(problem.fields).length ? FIX_FIELDS : problem.message);
  }

  const title = item ? `Edit “${item.name}”` : "New item";
  return (
    <article aria-labelledby="editor-title">
      <h2 id="editor-title">{title}</h2>
      <form onSubmit={submit} noValidate>
        <Field label="Name" name="name" value={name} onValue={edited("name", setName)} error={fields.name} required />
        <Field
          label="Description"
          name="description"
          multiline
          value={description}
          onValue={edited("description", setDescription)}
          error={fields.description}
        />
        <div class="grid">
          <Field
            label="Price"
            name="price"
            inputMode="decimal"
            hint="For example 12.50"
            value={price}
            onValue={edited("price", setPrice)}
            error={fields.price}
            required
          />
          <Field
            label="Tags"
            name="tags"
            hint="Separated by commas"
            value={tags}
            onValue={edited("tags", setTags)}
            error={fields.tags}
          />
        </div>
        <Alert>{message}</Alert>
        <div class="toolbar">
          <button type="submit" aria-busy={busy} disabled={busy}>
            Save
          </button>
          <button type="button" class="secondary outline" onClick={() => onDone(null)}>
            Cancel
          </button>
        </div>
      </form>
    </article>
  );
}
