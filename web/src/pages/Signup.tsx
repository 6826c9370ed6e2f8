import { useState } from "preact/hooks";
import { api, problemOf } from "../api/client";
import { Alert, FIX_FIELDS, Field, useFieldErrors } from "../components";
import { href, navigate } from "../router";
import { logIn } from "./Login";

export function Signup() {
  const [email, setEmail] = useState("");
  const [fullName, setFullName] = useState("");
  const [password, setPassword] = useState("");
  const [message, setMessage] = useState<string | null>(null);
  const { fields, setFields, edited } = useFieldErrors();
  const [busy, setBusy] = useState(false);

  async function submit(event: Event) {
    event.preventDefault();
    setBusy(true);
    const { error, response } = await api.POST("/api/v1/users/signup", {
      body: { email, password, full_name: fullName || null },
    });
    if (error) {
      const problem = problemOf(error, response.status);
      setFields(problem.fields);
      setMessage(Object.keys(problem.fields).length ? FIX_FIELDS : problem.message);
      setBusy(false);
      return;
    }
    const loginProblem = await logIn(email, password);
    setBusy(false);
    if (loginProblem) setMessage(loginProblem);
    else navigate("/items");
  }

  return (
    <article class="narrow">
      <h1>Sign up</h1>
      <form onSubmit={submit} noValidate>
        <Field
          label="Email"
          name="email"
          type="email"
          autocomplete="username"
          value={email}
          onValue={edited("email", setEmail)}
          error={fields.email}
          required
        />
        <Field
          label="Full name (optional)"
          name="full_name"
          autocomplete="name"
          value={fullName}
          onValue={edited("full_name", setFullName)}
          error={fields.full_name}
        />
        <Field
          label="Password"
          name="password"
          type="password"
          autocomplete="new-password"
          hint="At least 8 characters."
          value={password}
          onValue={edited("password", setPassword)}
          error={fields.password}
          required
        />
        <Alert>{message}</Alert>
        <button type="submit" aria-busy={busy} disabled={busy}>
          Create account
        </button>
      </form>
      <p>
        Have an account? <a href={href("/login")}>Log in</a>
      </p>
    </article>
  );
}
