// The weir HTTP API as the page reads it. Same origin: the page is served
// by the node it asks.

export interface Counts { allowed: number; denied: number; allowed_cost: number; denied_cost: number }
export interface KeyAttrs { user?: string; ip?: string; token?: string; endpoint?: string }
export interface TopEntry { policy?: string; tier?: string; namespace?: string; key: KeyAttrs; key_id: string; count: number; error: number; nodes: number }
export interface ScopeReport { policy?: string; tier?: string; namespace?: string; counts: Counts; allowed: number[]; denied: number[] }
export interface UsageReport {
  scope: string; range: string; start: number; step_s: number; nodes: string[];
  missing: { node: string; error: string }[]; totals: Counts; allowed: number[]; denied: number[];
  scopes: ScopeReport[]; top_allowed: TopEntry[]; top_denied: TopEntry[]; memory_bytes: number;
}
export interface LimitReport { name: string; algorithm: string; limit: number; window_ms: number; allowed: boolean; remaining: number; reset_after_ms: number }
export interface Estimate { count: number; error: number }
export interface KeyReport {
  decision: { policy?: string; tier?: string; allowed: boolean; limits: LimitReport[] };
  tier_source: string | null;
  assignment: { subject: string; id: string; tier: string; until_ms: number | null } | null;
  recent: Record<string, { allowed: Estimate | null; denied: Estimate | null }>;
  nodes: string[]; missing: { node: string; error: string }[];
}
export interface Member { node_id: string; generation: number; self: boolean; live: boolean; last_sync_ms_ago: number | null; lag_ms: number | null; decisions: number | null }
export interface ClusterStatus { mode: string; node_id?: string; live: number; expected: number; members: Member[] }
export interface ConfigView { version: number; config: { policies: Record<string, { key: string[]; default_tier: string; tiers: Record<string, { unlimited?: boolean; limits?: { name?: string; algorithm: string; rate: string; burst?: number }[] }> }> } }

export interface AlertRecord {
  id: string; rule: string; severity: string; when: string; policy?: string; namespace?: string; tier?: string;
  key: KeyAttrs; count: number; threshold: number; window_s: number; node: string; fired_at_ms: number; fired_at: string;
  penalty: { subject: string; id: string; tier: string; until_ms: number } | null;
}
export interface AlertsAnswer { alerts: AlertRecord[]; nodes: string[]; missing: { node: string; error: string }[] }

export class ApiError extends Error {
  constructor(public status: number, message: string) { super(message); }
}

let token = "";
export function setToken(value: string): void { token = value; }

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  if (token) headers["authorization"] = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  const json = text ? JSON.parse(text) : null;
  if (!response.ok) throw new ApiError(response.status, json?.error ?? response.statusText);
  return json as T;
}

export const usage = (query: URLSearchParams) => call<UsageReport>("GET", `/v1/usage?${query}`);
export const keyView = (query: URLSearchParams) => call<KeyReport>("GET", `/v1/usage/key?${query}`);
export const alerts = () => call<AlertsAnswer>("GET", "/v1/alerts?limit=20");
export const cluster = () => call<ClusterStatus>("GET", "/v1/cluster");
export const config = () => call<ConfigView>("GET", "/v1/config");
export const assignTier = (subject: string, id: string, tier: string, lasting: string) =>
  call<unknown>("PUT", `/v1/tiers/${subject}/${encodeURIComponent(id)}`, lasting ? { tier, for: lasting } : { tier });
