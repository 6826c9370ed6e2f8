// The typed API client. Paths, parameters and bodies come from schema.d.ts, which is
// generated from the service's own /openapi.json (`make web-api`): when the API
// changes, this code stops compiling instead of failing in a user's browser.
import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";
import { session } from "../session";

export type Item = components["schemas"]["ItemPublic"];
export type User = components["schemas"]["UserPublic"];
export type ErrorBody = components["schemas"]["ErrorBody"];
export type ItemSort = components["schemas"]["ItemSort"];
export type Role = components["schemas"]["Role"];

// The directory index.html was served from: the API lives beside it, also when the
// service runs under a path prefix (FASTSHIP_ROOT_PATH).
const baseUrl = new URL(".", window.location.href).href.replace(/\/$/, "");

const authenticate: Middleware = {
  onRequest({ request }) {
    const token = session.token();
    if (token) request.headers.set("Authorization", `Bearer ${token}`);
    return request;
  },
  onResponse({ request, response }) {
    // A token that has expired or was revoked (password or role change, account
    // disabled or deleted) ends the session: back to the login page.
    if (response.status === 401 && request.headers.has("Authorization")) {
      session.end("Your session has ended. Log in again.");
    }
    return response;
  },
};

export const api = createClient<paths>({ baseUrl });
api.use(authenticate);

/** Field problems of a 422 (or a field-specific 409), keyed by form field name. */
export type FieldErrors = Record<string, string>;

export interface Problem {
  message: string;
  fields: FieldErrors;
}

const CODE_FIELDS: Record<string, string> = {
  email_taken: "email",
  wrong_password: "current_password",
  password_required: "current_password",
};

/**
 * The message and per-field messages of an error body. `details[].field` is where
 * the API found the problem ("body.price", "body.tags.2", "body"); the form field is
 * the part after "body." up to the next dot.
 */
export function problemOf(error: unknown, status?: number): Problem {
  const body = (error ?? {}) as Partial<ErrorBody>;
  const fields: FieldErrors = {};
  for (const detail of body.details ?? []) {
    const path = detail.field.split(".");
    const name = path[0] === "body" || path[0] === "query" ? path[1] : path[0];
    if (name && !(name in fields)) fields[name] = detail.message;
  }
  // Errors about one field that are not validation errors.
  const field = body.code ? CODE_FIELDS[body.code] : undefined;
  if (field && body.message && !(field in fields)) fields[field] = body.message;
  const fallback = status ? `The request failed (HTTP ${status}).` : "The request failed.";
  return { message: body.message ?? fallback, fields };
}
