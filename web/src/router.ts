// Routes live in the URL's fragment (#/items?page=2): the service serves one
// document, and reloading or bookmarking any page works without server routes.
import { signal, useSignal } from "./signal";

export interface Route {
  path: string;
  params: URLSearchParams;
}

function parse(): Route {
  const raw = window.location.hash.replace(/^#/, "") || "/";
  const [path = "/", query = ""] = raw.split("?", 2);
  return { path, params: new URLSearchParams(query) };
}

const current = signal<Route>(parse());
window.addEventListener("hashchange", () => current.set(parse()));

export function useRoute(): Route {
  return useSignal(current);
}

export function href(path: string, params?: Record<string, string | number | undefined>): string {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params ?? {})) {
    if (value !== undefined && value !== "") query.set(key, String(value));
  }
  const text = query.toString();
  return `#${path}${text ? `?${text}` : ""}`;
}

export function navigate(path: string, params?: Record<string, string | number | undefined>): void {
  const target = href(path, params);
  if (window.location.hash === target) current.set(parse());
  else window.location.hash = target;
}
