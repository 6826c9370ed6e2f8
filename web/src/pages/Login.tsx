import { useState } from "preact/hooks";
import { api, problemOf, type FieldErrors } from "../api/client";
import { Alert, Field, Status } from "../components";
import { href, navigate } from "../router";
import { session } from "../session";

export async function logIn(email: string, password: string): Promise<string | null> {
  const { data, error, response } = await api.POST("/api/v1/auth/token", {
    body: { username: email, password, scope: "" },
    bodySerializer: (body) => new URLSearchParams(body as Record<string, string>),
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
  });
  if (data) {
    session.start(data.access_token);
    return null;
  }
  return problemOf(error, response.status).message;
}

export function Login({ notice }: { notice: string | null }) {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [message, setMessage] = useState<string | null>(null);
  const [fields, setFields] = useState<FieldErrors>({});
  const [busy, setBusy] = useState(false);

  async function submit(event: Event) {
    event.preventDefault();
    const missing: FieldErrors = {};
    if (!email) missing.username = "Enter your email.";
    if (!password) missing.password = "Enter your password.";
    setFields(missing);
    if (Object.keys(missing).length) return;
    setBusy(true);
    const problem = await logIn(email, password);
    setBusy(false);
    if (problem) setMessage(problem);
    else navigate("/items");
  }

  return (
    <article class="narrow">
      <h1>Log in</h1>
      {notice && <Status>{notice}</Status>}
      <form onSubmit={submit} noValidate>
        <Field
          label="Email"
          name="email"
          type="email"
          autocomplete="username"
          value={email}
          onValue={setEmail}
          error={fields.username}
          required
        />
        <Field
          label="Password"
          name="password"
          type="password"
          autocomplete="current-password"
          value={password}
          onValue={setPassword}
          error={fields.password}
          required
        />
        <Alert>{message}</Alert>
        <button type="submit" aria-busy={busy} disabled={busy}>
          Log in
        </button>
      </form>
      <p>
        No account yet? <a href={href("/signup")}>Sign up</a>
      </p>
    </article>
  );
}
