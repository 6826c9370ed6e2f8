import { useEffect, useState } from "preact/hooks";
import { api, problemOf, type User } from "./api/client";
import { Alert } from "./components";
import { AdminUsers } from "./pages/AdminUsers";
import { Items } from "./pages/Items";
import { Login } from "./pages/Login";
import { Profile } from "./pages/Profile";
import { Signup } from "./pages/Signup";
import { href, navigate, useRoute } from "./router";
import { session } from "./session";
import { useSignal } from "./signal";

export function App() {
  const { token, notice } = useSignal(session.state);
  const route = useRoute();
  const [me, setMe] = useState<User | null>(null);
  const [problem, setProblem] = useState<string | null>(null);

  useEffect(() => {
    setMe(null);
    setProblem(null);
    if (!token) return;
    let current = true;
    api.GET("/api/v1/users/me").then(({ data, error, response }) => {
      if (!current) return;
      if (data) setMe(data);
      // A 401 has already ended the session (api/client.ts).
      else if (response.status !== 401) setProblem(problemOf(error, response.status).message);
    });
    return () => {
      current = false;
    };
  }, [token]);

  // Signed out: only the login and signup pages exist.
  useEffect(() => {
    if (!token && route.path !== "/login" && route.path !== "/signup") navigate("/login");
    if (token && (route.path === "/login" || route.path === "/signup" || route.path === "/"))
      navigate("/items");
  }, [token, route.path]);

  let page;
  if (!token) page = route.path === "/signup" ? <Signup /> : <Login notice={notice} />;
  else if (problem) page = <Alert>{problem}</Alert>;
  else if (!me) page = <p aria-busy="true">Loading…</p>;
  else if (route.path === "/items") page = <Items route={route} me={me} />;
  else if (route.path === "/profile") page = <Profile me={me} onChange={setMe} />;
  else if (route.path === "/admin/users" && me.role === "admin")
    page = <AdminUsers route={route} me={me} />;
  else
    page = (
      <section>
        <h1>Page not found</h1>
        <p>
          There is no page at {route.path}. <a href={href("/items")}>Go to your items</a>.
        </p>
      </section>
    );

  return (
    <>
      <header class="container">
        <nav aria-label="Main">
          <ul>
            <li>
              <a href={href(token ? "/items" : "/login")} class="brand">
                fastship
              </a>
            </li>
          </ul>
          {token && me && (
            <ul>
              <NavLink path="/items" current={route.path}>
                Items
              </NavLink>
              <NavLink path="/profile" current={route.path}>
                Profile
              </NavLink>
              {me.role === "admin" && (
                <NavLink path="/admin/users" current={route.path}>
                  Users
                </NavLink>
              )}
              <li>
                <button
                  type="button"
                  class="secondary outline"
                  onClick={() => session.end("You have logged out.")}
                >
                  Log out
                </button>
              </li>
            </ul>
          )}
        </nav>
      </header>
      <main class="container">{page}</main>
    </>
  );
}

function NavLink(props: { path: string; current: string; children: string }) {
  return (
    <li>
      <a href={href(props.path)} aria-current={props.current === props.path ? "page" : undefined}>
        {props.children}
      </a>
    </li>
  );
}
