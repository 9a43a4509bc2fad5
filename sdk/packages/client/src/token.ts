/** The JWT claims the SDK reads. */
export interface TokenClaims {
  userId?: string;
  accountId?: string;
  roomId?: string;
}

/**
 * The claims of a user's JWT, read without verifying it (the server verifies): the SDK only
 * uses them to know whom and where it speaks for before the server answers.
 */
export function claimsOf(token: string): TokenClaims | undefined {
  const payload = token.split('.')[1];
  if (!payload) return undefined;
  try {
    const base64 = payload.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(payload.length / 4) * 4, '=');
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    const claimed: TokenClaims = {};
    for (const name of ['userId', 'accountId', 'roomId'] as const) {
      if (typeof claims?.[name] === 'string') claimed[name] = claims[name];
    }
    return claimed;
  } catch {
    return undefined;
  }
}
