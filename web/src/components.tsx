import type { ComponentChildren, JSX } from "preact";
import { useId, useState } from "preact/hooks";
import type { FieldErrors } from "./api/client";

type InputProps = Omit<JSX.InputHTMLAttributes<HTMLInputElement>, "label" | "onInput"> & {
  label: string;
  error?: string | undefined;
  hint?: string;
  value: string;
  onValue: (value: string) => void;
  multiline?: boolean;
};

/** A labelled input; the API's message for this field shows right under it. */
export function Field({ label, error, hint, value, onValue, multiline, ...input }: InputProps) {
  const id = useId();
  const note = error ?? hint;
  const noteId = note ? `${id}-note` : undefined;
  const shared = {
    id,
    "aria-invalid": error ? ("true" as const) : undefined,
    "aria-describedby": noteId,
  };
  // The message is outside the label, so that the field's name stays its label; it
  // is tied to the field by aria-describedby.
  return (
    <div class="field">
      <label for={id}>{label}</label>
      {multiline ? (
        <textarea
          {...shared}
          name={input.name}
          rows={3}
          value={value}
          onInput={(e) => onValue(e.currentTarget.value)}
        />
      ) : (
        <input {...input} {...shared} value={value} onInput={(e) => onValue(e.currentTarget.value)} />
      )}
      {note && (
        <small id={noteId} class={error ? "field-error" : undefined}>
          {note}
        </small>
      )}
    </div>
  );
}

export const FIX_FIELDS = "Please correct the fields marked above.";

/** A problem with the whole request, read out by screen readers when it appears. */
export function Alert({ children }: { children: ComponentChildren }) {
  if (!children) return null;
  return (
    <p role="alert" class="alert">
      {children}
    </p>
  );
}

/** The outcome of the last action ("Saved", "Deleted"). */
export function Status({ children }: { children: ComponentChildren }) {
  return (
    <p role="status" class="status">
      {children}
    </p>
  );
}

export function Pager(props: {
  label: string;
  offset: number;
  limit: number;
  total: number;
  onPage: (page: number) => void;
}) {
  const { offset, limit, total } = props;
  const page = Math.floor(offset / limit) + 1;
  const pages = Math.max(1, Math.ceil(total / limit));
  const first = total === 0 ? 0 : offset + 1;
  const last = Math.min(offset + limit, total);
  return (
    <nav aria-label={props.label} class="pager">
      <span>
        {first}–{last} of {total} · page {page} of {pages}
      </span>
      <span class="pager-buttons">
        <button
          type="button"
          class="secondary outline"
          disabled={page <= 1}
          onClick={() => props.onPage(page - 1)}
        >
          Previous
        </button>
        <button
          type="button"
          class="secondary outline"
          disabled={page >= pages}
          onClick={() => props.onPage(page + 1)}
        >
          Next
        </button>
      </span>
    </nav>
  );
}

export function formatDate(value: string): string {
  return new Date(value).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function formatDay(value: string): string {
  return new Date(value).toLocaleDateString(undefined, { dateStyle: "medium" });
}

/**
 * A form's field errors. `edited(name, set)` wraps a field's setter so that editing
 * the field takes its error away until the next answer of the API.
 */
export function useFieldErrors() {
  const [fields, setFields] = useState<FieldErrors>({});
  const edited = (name: string, set: (value: string) => void) => (value: string) => {
    set(value);
    setFields((current) => {
      if (!(name in current)) return current;
      const rest = { ...current };
      delete rest[name];
      return rest;
    });
  };
  return { fields, setFields, edited };
}
