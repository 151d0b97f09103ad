// Reads X-Robots-Tag response headers and says whether a site forbids using its images for
// training data. A pure function of the header values and the agent names this crawler answers to.

/** Directives that make us drop a response. `none` is shorthand for `noindex, nofollow`. */
export const ROBOTS_DISALLOW_DIRECTIVES: ReadonlySet<string> = new Set([
  'noai',
  'noimageai',
  'noindex',
  'noimageindex',
  'none',
]);

/**
 * Directives that carry a value after a colon. `unavailable_after: <date>` must not be mistaken
 * for a user-agent prefix such as `googlebot: noindex`.
 */
const VALUED_DIRECTIVES: ReadonlySet<string> = new Set([
  'unavailable_after',
  'max-snippet',
  'max-image-preview',
  'max-video-preview',
]);

/**
 * Returns the first directive that forbids use for one of `agents` (lower-case product names, e.g.
 * `filip-data`), or undefined when none does.
 *
 * Each header value is a comma-separated list. A `name:` prefix on an item scopes it and the items
 * after it to that agent, until the next prefix; `*` means every agent, and items before any prefix
 * apply to every agent. Directives for other agents (`googlebot: noindex`) are ignored.
 */
export function robotsDisallow(
  header: string | readonly string[] | undefined,
  agents: readonly string[],
): string | undefined {
  if (header === undefined) return undefined;
  const values = typeof header === 'string' ? [header] : header;
  for (const value of values) {
    let agent: string | undefined; // undefined: not scoped, applies to all
    for (const rawItem of value.split(',')) {
      let item = rawItem.trim().toLowerCase();
      const prefixed = /^([^\s:]+)\s*:\s*(.*)$/.exec(item);
      if (prefixed !== null && !VALUED_DIRECTIVES.has(prefixed[1]!)) {
        agent = prefixed[1]!;
        item = prefixed[2]!.trim();
      }
      const applies = agent === undefined || agent === '*' || agents.includes(agent);
      if (applies && ROBOTS_DISALLOW_DIRECTIVES.has(item)) return item;
    }
  }
  return undefined;
}

/** Agent names a `name:` prefix may use to address this crawler: `filip-data` and the token's product. */
export function robotsAgentNames(userAgentToken: string): string[] {
  const names = ['filip-data'];
  const product = userAgentToken.split(/[\s/]/, 1)[0]?.toLowerCase();
  if (product !== undefined && product !== '' && !names.includes(product)) names.push(product);
  return names;
}
