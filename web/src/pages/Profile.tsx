import { useState } from "preact/hooks";
import { api, problemOf, type User } from "../api/client";
import { Alert, FIX_FIELDS, Field, Status, formatDate, useFieldErrors } from "../components";
import { session } from "../session";

export function Profile({ me, onChange }: { me: User; onChange: (user: User) => void }) {
  return (
    <section>
      <hgroup>
        <h1>Profile</h1>
        <p>
          {me.role === "admin" ? "Admin" : "User"} since {formatDate(me.created_at)}
        </p>
      </hgroup>
      <div class="grid">
        <ProfileForm me={me} onChange={onChange} />
        <PasswordForm />
      </div>
    </section>
  );
}

function ProfileForm({ me, onChange }: { me: User; onChange: (user: User) => void }) {
  const [email, setEmail] = useState(me.email);
  const [fullName, setFullName] = useState(me.full_name ?? "");
  const [password, setPassword] = useState("");
  const { fields, setFields, edited } = useFieldErrors();
  const [message, setMessage] = useState<string | null>(null);
  const [status, setStatus] = useState("");
  // A new email needs the password, and ends the session (every older token stops working).
  const emailChanged = email.trim() !== me.email;

  async function submit(event: Event) {
    event.preventDefault();
    setStatus("");
    const { data, error, response } = await api.PATCH("/api/v1/users/me", {
      body: emailChanged
        ? { email, full_name: fullName, ...(password ? { current_password: password } : {}) }
        : { full_name: fullName },
    });
    if (data && emailChanged) {
      session.end("Your email has changed. Log in with the new one.");
      return;
    }
    if (data) {
      setFields({});
      setMessage(null);
      setStatus("Profile saved.");
      onChange(data);
      return;
    }
    const problem = problemOf(error, response.status);
    setFields(problem.fields);
    setMessage(Object.keys(problem.fields).length ? FIX_FIELDS : problem.message);
  }

  return (
    <article aria-labelledby="profile-title">
      <h2 id="profile-title">Your details</h2>
      <form onSubmit={submit} noValidate>
        <Field
          label="Email"
          name="email"
          type="email"
          autocomplete="email"
          value={email}
          onValue={edited("email", setEmail)}
          error={fields.email}
        />
        {emailChanged && (
          <Field
            label="Password, to change the email"
            name="current_password"
            type="password"
            autocomplete="current-password"
            value={password}
            onValue={edited("current_password", setPassword)}
            error={fields.current_password}
          />
        )}
        <Field
          label="Full name"
          name="full_name"
          autocomplete="name"
          value={fullName}
          onValue={edited("full_name", setFullName)}
          error={fields.full_name}
        />
        <Alert>{message}</Alert>
        <Status>{status}</Status>
        <button type="submit">Save profile</button>
      </form>
    </article>
  );
}

function PasswordForm() {
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const [repeat, setRepeat] = useState("");
  const { fields, setFields, edited } = useFieldErrors();
  const [message, setMessage] = useState<string | null>(null);

  async function submit(event: Event) {
    event.preventDefault();
    if (next !== repeat) {
      setFields({ repeat: "The two new passwords differ." });
      setMessage(FIX_FIELDS);
      return;
    }
    const { error, response } = await api.POST("/api/v1/users/me/password", {
      body: { current_password: current, new_password: next },
    });
    if (response.ok) {
      // The change ends every token issued before it, this one too.
      session.end("Your password has changed. Log in with the new one.");
      return;
    }
    const problem = problemOf(error, response.status);
    setFields(problem.fields);
    setMessage(Object.keys(problem.fields).length ? FIX_FIELDS : problem.message);
  }

  return (
    <article aria-labelledby="password-title">
      <h2 id="password-title">Change password</h2>
      <form onSubmit={submit} noValidate>
        <Field
          label="Current password"
          name="current_password"
          type="password"
          autocomplete="current-password"
          value={current}
          onValue={edited("current_password", setCurrent)}
          error={fields.current_password}
        />
        <Field
          label="New password"
          name="new_password"
          type="password"
          autocomplete="new-password"
          hint="At least 8 characters. You will log in again."
          value={next}
          onValue={edited("new_password", setNext)}
          error={fields.new_password}
        />
        <Field
          label="New password, again"
          name="repeat"
          type="password"
          autocomplete="new-password"
          value={repeat}
          onValue={edited("repeat", setRepeat)}
          error={fields.repeat}
        />
        <Alert>{message}</Alert>
        <button type="submit">Change password</button>
      </form>
    </article>
  );
}
