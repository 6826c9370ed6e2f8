import { useEffect, useState } from "preact/hooks";
import { api, problemOf, type Role, type User } from "../api/client";
import { Alert, Pager, Status, formatDay } from "../components";
import { navigate, type Route } from "../router";

const PAGE_SIZE = 20;

interface Page {
  items: User[];
  total: number;
  limit: number;
  offset: number;
}

/** Every account, for admins: role changes, disabling and deleting. */
export function AdminUsers({ route, me }: { route: Route; me: User }) {
  const pageNumber = Math.max(1, Number.parseInt(route.params.get("page") ?? "1", 10) || 1);
  const [page, setPage] = useState<Page | null>(null);
  const [message, setMessage] = useState<string | null>(null);
  const [status, setStatus] = useState("");
  const [confirming, setConfirming] = useState<string | null>(null);
  const [reload, setReload] = useState(0);

  useEffect(() => {
    let current = true;
    api
      .GET("/api/v1/users", {
        params: { query: { limit: PAGE_SIZE, offset: (pageNumber - 1) * PAGE_SIZE } },
      })
      .then(({ data, error, response }) => {
        if (!current) return;
        if (data && data.items.length === 0 && data.total > 0) {
          navigate("/admin/users", { page: Math.ceil(data.total / PAGE_SIZE) });
        } else if (data) setPage(data);
        else setMessage(problemOf(error, response.status).message);
      });
    return () => {
      current = false;
    };
  }, [pageNumber, reload]);

  async function change(user: User, body: { role?: Role; is_active?: boolean }, done: string) {
    setStatus("");
    const { error, response } = await api.PATCH("/api/v1/users/{user_id}", {
      params: { path: { user_id: user.id } },
      body,
    });
    if (error) setMessage(problemOf(error, response.status).message);
    else {
      setMessage(null);
      setStatus(done);
    }
    setReload((n) => n + 1);
  }

  async function remove(user: User) {
    setStatus("");
    setConfirming(null);
    const { error, response } = await api.DELETE("/api/v1/users/{user_id}", {
      params: { path: { user_id: user.id } },
    });
    if (error) setMessage(problemOf(error, response.status).message);
    else {
      setMessage(null);
      setStatus(`Deleted ${user.email} and their items.`);
    }
    setReload((n) => n + 1);
  }

  return (
    <section>
      <hgroup>
        <h1>Users</h1>
        <p>Role changes, disabling and new passwords end that user's sessions.</p>
      </hgroup>
      <Status>{status}</Status>
      <Alert>{message}</Alert>
      {page === null ? (
        <p aria-busy="true">Loading users…</p>
      ) : (
        <>
          <div class="overflow-auto">
            <table class="striped">
              <thead>
                <tr>
                  <th scope="col">Email</th>
                  <th scope="col">Name</th>
                  <th scope="col">Role</th>
                  <th scope="col">Status</th>
                  <th scope="col">Created</th>
                  <th scope="col">
                    <span class="visually-hidden">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {page.items.map((user) => (
                  <tr key={user.id} data-user={user.email}>
                    <th scope="row">
                      {user.email}
                      {user.id === me.id && " (you)"}
                    </th>
                    <td>{user.full_name}</td>
                    <td>
                      <select
                        aria-label={`Role of ${user.email}`}
                        value={user.role}
                        onChange={(e) => {
                          const role = e.currentTarget.value as Role;
                          void change(user, { role }, `${user.email} is now ${role === "admin" ? "an admin" : "a user"}.`);
                        }}
                      >
                        <option value="user">user</option>
                        <option value="admin">admin</option>
                      </select>
                    </td>
                    <td>{user.is_active ? "active" : "disabled"}</td>
                    <td class="date">{formatDay(user.created_at)}</td>
                    <td class="actions">
                      <button
                        type="button"
                        class="secondary outline"
                        aria-label={`${user.is_active ? "Disable" : "Enable"} ${user.email}`}
                        onClick={() =>
                          change(
                            user,
                            { is_active: !user.is_active },
                            `${user.email} is ${user.is_active ? "disabled" : "enabled"}.`,
                          )
                        }
                      >
                        {user.is_active ? "Disable" : "Enable"}
                      </button>
                      {confirming === user.id ? (
                        <>
                          <button type="button" class="danger" onClick={() => remove(user)}>
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
                        <button
                          type="button"
                          class="secondary outline"
                          aria-label={`Delete ${user.email}`}
                          onClick={() => setConfirming(user.id)}
                        >
                          Delete
                        </button>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <Pager
            label="User pages"
            offset={page.offset}
            limit={page.limit}
            total={page.total}
            onPage={(n) => navigate("/admin/users", { page: n > 1 ? n : undefined })}
          />
        </>
      )}
    </section>
  );
}
