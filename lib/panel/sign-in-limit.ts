// A simple brake on password guessing: a key (an account name, a client address) with too many
// failed sign-ins in a window is refused until the window ends. In this process's memory (several replicas
// each keep their own count); bounded in size.
export class SignInLimit {
  private readonly failures = new Map<string, { count: number; until: number }>();
  private readonly max: number;
  private readonly windowMs: number;
  private readonly capacity: number;

  constructor(max = 10, windowMs = 10 * 60_000, capacity = 10_000) {
    this.max = max;
    this.windowMs = windowMs;
    this.capacity = capacity;
  }

  private live(key: string, now: number): { count: number; until: number } | undefined {
    const entry = this.failures.get(key);
    if (entry && entry.until <= now) this.failures.delete(key);
    return entry && entry.until > now ? entry : undefined;
  }

  blocked(key: string, now = Date.now()): boolean {
    return (this.live(key, now)?.count ?? 0) >= this.max;
  }

  failed(key: string, now = Date.now()): void {
    const entry = this.live(key, now) ?? { count: 0, until: now + this.windowMs };
    entry.count += 1;
    this.failures.delete(key);
    this.failures.set(key, entry);
    // The oldest entries go first when the table is full (a Map keeps insertion order).
    while (this.failures.size > this.capacity) this.failures.delete(this.failures.keys().next().value!);
  }

  succeeded(key: string): void {
    this.failures.delete(key);
  }
}
