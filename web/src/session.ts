// The signed-in user's bearer token, kept in sessionStorage: it lives as long as the
// browser tab, and the content security policy keeps foreign scripts from reading it.
import { signal } from "./signal";

const KEY = "fastship.token";

export interface SessionState {
  token: string | null;
  /** Why the last session ended, shown on the login page. */
  notice: string | null;
}

const state = signal<SessionState>({ token: sessionStorage.getItem(KEY), notice: null });

export const session = {
  state,
  token(): string | null {
    return state.get().token;
  },
  start(token: string): void {
    sessionStorage.setItem(KEY, token);
    state.set({ token, notice: null });
  },
  end(notice: string | null = null): void {
    sessionStorage.removeItem(KEY);
    if (state.get().token !== null || notice !== state.get().notice) {
      state.set({ token: null, notice });
    }
  },
};
