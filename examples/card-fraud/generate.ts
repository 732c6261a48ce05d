/**
 * Synthetic card-fraud data for the `card-fraud` example bundle.
 *
 *     node --import tsx examples/card-fraud/generate.ts [--out DIR]
 *
 * Deterministic: one seeded PRNG (sfc32, seed SEED below) drives everything, so every run
 * writes byte-identical files (the committed `data/` is exactly this script's output).
 *
 * THE WORLD. A card issuer, 60 days from Monday 2026-08-03 00:00 UTC (to 2026-10-01 24:00).
 *  - Customers (about 1,650), each with a home region (north, south, east, west, central)
 *    and an account open date: 83% established accounts (opened 6 months to ~20 years
 *    before the start), 10% opened in the 180 days before the start, 7% opened during the
 *    60 days. A customer has 1 card (80%), 2 (17%) or 3 (3%): 2,000 cards in all, each
 *    issued when its account opens (extra cards up to 30 days later) and used from then on.
 *  - 1,500 merchants in 13 categories, each in one region, with a typical amount (the
 *    category's median, e.g. transit 3.20, coffee 6.50, grocery 55, electronics 220,
 *    travel 380, times a per-merchant factor).
 *  - Legitimate spending. Each card has its own rate (log-normal, median about 1.3
 *    transactions a day), spending level (log-normal factor on amounts), category tastes,
 *    and 8-30 regular merchants in its home region; 12% of purchases are at a merchant the
 *    card has not used before. Amount = merchant's typical amount x the card's level x
 *    log-normal noise (the category's spread); 15% of online-retail purchases are apps,
 *    songs and e-books at 0.99-4.99 (as tiny as a card tester's).
 *  - Seasonality. Daily: almost nothing from 01:00 to 05:00 UTC, a lunch and an evening peak,
 *    and categories follow the clock (coffee and transit in the morning commute,
 *    restaurants at lunch and dinner, entertainment at night). Weekly: Friday and Saturday
 *    busiest (x1.15, x1.2), Sunday and Monday quietest; weekends have more restaurants,
 *    entertainment and apparel and almost no commuting.
 *
 * PLANTED FRAUD (every transaction of an episode is is_fraud = 1). A card is compromised at
 * most once; each active day it is compromised with probability 0.0025, x3.5 while its
 * account is under 90 days old, x1.5 from 90 days to a year, and x1.4 for customers in the
 * west region (a fraud ring). Its episode then has one pattern (young accounts: bust-out
 * 40%, otherwise as for the others):
 *  (a) burst, 35%: card testing then cash-out. 5-16 transactions about 40 s apart (a fifth
 *      of bursts are slower, 3-9 min apart): the first 1-3 are tiny (0.50-2.50) at one
 *      online-retail or gift-card merchant, the rest 30-400 at online retail, gift cards
 *      and electronics anywhere in the country. Shows as txn_count_10m / txn_count_1h.
 *  (b) new merchants, 25%: 4-9 purchases 4-15 min apart, each at a different merchant the
 *      card never used (electronics, apparel, online retail, jewelry, gift cards), at about
 *      1.5x each merchant's typical amount. Few per 10 minutes, many distinct_merchants_1h.
 *  (c) unusual amount, 30%: one purchase (a third of the time two within the hour) of
 *      5-25x the card's mean over the previous 30 days (3-5x for a fifth of them) at
 *      electronics, jewelry, travel or gift cards. Shows as amount_to_mean_30d.
 *  (d) young accounts are riskier: the x3.5 hazard above, plus the bust-out pattern, only
 *      for accounts under 90 days: 3-8 purchases of 200-2,000 over 1-6 hours at
 *      electronics, jewelry, gift cards and travel, often before the card has any history
 *      (amount_mean_30d missing). Shows as account_age_days with amount.
 *  (e) quiet, 10%: one or two ordinary-looking purchases at the card's usual kind of
 *      merchant for a usual amount. Nothing in the features gives them away: they keep any
 *      model's AUC below 1.
 * Result (the committed data): 186,586 transactions, 1,933 fraudulent (1.04%), 347 episodes:
 *      pattern          episodes  transactions  share of all  share of fraud
 *      burst                 112         1,167        0.63%          60.4%
 *      new merchants          64           442        0.24%          22.9%
 *      unusual amount        108           139        0.07%           7.2%
 *      bust-out               23           127        0.07%           6.6%
 *      quiet                  40            58        0.03%           3.0%
 *    Fraud rate by account age at the transaction: under 90 days 2.08% (16,177
 *    transactions), 90 days to a year 1.06% (29,978), over a year 0.91% (140,431).
 *
 * LEGITIMATE LOOK-ALIKES (is_fraud = 0), so that no single rule separates the classes:
 *  - bursts: a food market, fair or stadium: 4-9 small purchases 20 s-2 min apart at
 *    several vendors (restaurant, coffee, entertainment, transit); 0.0025 per card-day, x3
 *    on weekends.
 *  - shopping trips: 3-7 purchases at different merchants 5-20 min apart (apparel,
 *    restaurant, coffee, grocery, entertainment, sometimes electronics), half of them at
 *    new merchants; 0.008 per card-day, x2 on weekends.
 *  - online bursts: in-game purchases (0.99-9.99, 20 s-2.5 min apart) or a marketplace
 *    order charged in parts (2-30 s apart): 3-8 charges at one or two online-retail shops
 *    (electronics for a fifth of them); 0.002 per card-day, x1.5 on weekends.
 *  - big tickets: one purchase of 5-25x the card's usual amount (travel, electronics,
 *    jewelry, apparel, gift cards); 0.0035 per card-day. Ordinary travel and electronics
 *    purchases are often 5x a card's mean anyway.
 *  - new accounts: in its first 30 days a card makes a big first purchase (150-1,500 at
 *    electronics, apparel or travel) with probability 0.02 a day.
 * Result: shopping trips 5,663 transactions, food-market bursts 2,773, online bursts 1,425,
 * big tickets 420, new accounts' first purchases 91 (all legitimate). The generator prints
 * these counts and rates when it runs.
 *
 * OUTPUT (in data/ beside this script unless --out is given):
 *  - customers.csv     the customer entity as a weekly CRM export: customer_id, updated_at,
 *                      account_age_days (as of updated_at), home_region, account_open_date;
 *                      one row per customer every Monday 00:00 UTC, plus one when an account
 *                      opens during the period. A point-in-time join takes, for a transaction
 *                      at time t, the customer's latest row with updated_at <= t.
 *  - transactions.csv  the event stream, sorted by event_time (strictly increasing, ms):
 *                      txn_id, card_id, customer_id, merchant_id, merchant_category, amount,
 *                      event_time (ISO 8601 UTC with ms).
 *  - outcomes.csv      the labels: txn_id, is_fraud (0/1), scenario (the generator's ground
 *                      truth: the fraud pattern, the legitimate look-alike, or empty; for
 *                      analysis only, never a model input).
 *  - cards.csv, merchants.csv   reference tables (card_id -> customer_id; merchants).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const SEED = 20260803;
const DAY = 86_400_000;
const HOUR = 3_600_000;
const MIN = 60_000;
const START = Date.UTC(2026, 7, 3); // Monday 2026-08-03 00:00 UTC
const DAYS = 60;
const END = START + DAYS * DAY;
const N_CARDS = 2000;
const N_MERCHANTS = 1500;

// ---------------------------------------------------------------------------------------
// Seeded PRNG: sfc32 (small fast counter), seeded through splitmix32.

function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  constructor(seed: number) {
    const sm = splitmix32(seed);
    this.a = sm();
    this.b = sm();
    this.c = sm();
    this.d = sm();
    for (let i = 0; i < 15; i++) this.next();
  }
  /** Uniform in [0, 1). */
  next(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t / 4294967296;
  }
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }
  /** Integer in [lo, hi], both included. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  normal(): number {
    let u = 0;
    while (u === 0) u = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }
  lognormal(median: number, sigma: number): number {
    return median * Math.exp(sigma * this.normal());
  }
  exponential(mean: number): number {
    return -mean * Math.log(1 - this.next());
  }
  poisson(lambda: number): number {
    if (lambda > 30) return Math.max(0, Math.round(lambda + Math.sqrt(lambda) * this.normal()));
    const l = Math.exp(-lambda);
    let k = 0;
    let p = 1;
    do {
      k++;
      p *= this.next();
    } while (p > l);
    return k - 1;
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)];
  }
  /** Index drawn with probability proportional to weights[i]. */
  weighted(weights: readonly number[]): number {
    let total = 0;
    for (const w of weights) total += w;
    let r = this.next() * total;
    for (let i = 0; i < weights.length; i++) {
      r -= weights[i];
      if (r < 0) return i;
    }
    return weights.length - 1;
  }
}

const rng = new Rng(SEED);

// ---------------------------------------------------------------------------------------
// The world: regions, categories, merchants.

const REGIONS = ['central', 'east', 'north', 'south', 'west'] as const;
const REGION_WEIGHTS = [0.18, 0.24, 0.16, 0.22, 0.2];

interface Category {
  name: string;
  /** Median amount at a typical merchant. */
  median: number;
  /** Log-normal spread of amounts. */
  sigma: number;
  /** Share of merchants. */
  merchants: number;
  /** Share of a typical card's purchases, weekdays / weekends. */
  weekday: number;
  weekend: number;
  /** Relative weight by hour of day (24 values, UTC) on top of the overall daily profile. */
  hours: (h: number) => number;
}

const flat = () => 1;
const between = (h: number, lo: number, hi: number) => h >= lo && h < hi;
const CATEGORIES: Category[] = [
  { name: 'apparel', median: 75, sigma: 0.7, merchants: 0.1, weekday: 0.06, weekend: 0.11, hours: (h) => (between(h, 10, 20) ? 1.4 : 0.5) },
  { name: 'coffee', median: 6.5, sigma: 0.35, merchants: 0.08, weekday: 0.1, weekend: 0.07, hours: (h) => (between(h, 6, 11) ? 3 : between(h, 14, 17) ? 1.2 : 0.3) },
  { name: 'electronics', median: 220, sigma: 0.9, merchants: 0.05, weekday: 0.025, weekend: 0.035, hours: (h) => (between(h, 10, 21) ? 1.3 : 0.4) },
  { name: 'entertainment', median: 42, sigma: 0.7, merchants: 0.07, weekday: 0.04, weekend: 0.09, hours: (h) => (between(h, 18, 24) || h < 1 ? 2.5 : 0.6) },
  { name: 'fuel', median: 48, sigma: 0.35, merchants: 0.08, weekday: 0.09, weekend: 0.07, hours: flat },
  { name: 'gift_cards', median: 60, sigma: 0.5, merchants: 0.03, weekday: 0.01, weekend: 0.012, hours: flat },
  { name: 'grocery', median: 55, sigma: 0.6, merchants: 0.13, weekday: 0.2, weekend: 0.2, hours: (h) => (between(h, 16, 21) ? 1.6 : 1) },
  { name: 'jewelry', median: 320, sigma: 0.9, merchants: 0.03, weekday: 0.006, weekend: 0.01, hours: (h) => (between(h, 10, 20) ? 1.3 : 0.3) },
  { name: 'online_retail', median: 48, sigma: 0.9, merchants: 0.1, weekday: 0.12, weekend: 0.1, hours: (h) => (between(h, 19, 24) ? 1.5 : 1) },
  { name: 'pharmacy', median: 22, sigma: 0.7, merchants: 0.06, weekday: 0.05, weekend: 0.04, hours: flat },
  { name: 'restaurant', median: 38, sigma: 0.6, merchants: 0.15, weekday: 0.14, weekend: 0.19, hours: (h) => (between(h, 11, 14) ? 2 : between(h, 18, 22) ? 2.2 : 0.5) },
  { name: 'transit', median: 3.2, sigma: 0.3, merchants: 0.04, weekday: 0.12, weekend: 0.03, hours: (h) => (between(h, 7, 10) || between(h, 16, 19) ? 3 : 0.4) },
  { name: 'travel', median: 380, sigma: 0.8, merchants: 0.05, weekday: 0.015, weekend: 0.02, hours: flat },
];
const CATEGORY_INDEX = new Map(CATEGORIES.map((c, i) => [c.name, i]));
const cat = (name: string): number => {
  const i = CATEGORY_INDEX.get(name);
  if (i === undefined) throw new Error(`unknown category ${name}`);
  return i;
};

/** Overall purchases by hour of day (UTC), before category preferences. */
const HOURLY = [0.35, 0.15, 0.08, 0.06, 0.08, 0.2, 0.55, 1.0, 1.25, 1.2, 1.25, 1.45, 1.75, 1.6, 1.3, 1.25, 1.35, 1.6, 1.8, 1.7, 1.45, 1.15, 0.85, 0.55];
const HOURLY_WEEKEND = [0.55, 0.35, 0.2, 0.1, 0.08, 0.1, 0.25, 0.5, 0.85, 1.15, 1.4, 1.55, 1.75, 1.7, 1.6, 1.55, 1.5, 1.55, 1.7, 1.75, 1.6, 1.35, 1.05, 0.8];
/** Fraudsters keep other hours: flatter, with a night shift. */
const HOURLY_FRAUD = [1.3, 1.4, 1.5, 1.4, 1.2, 1.0, 0.8, 0.8, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.1, 1.2, 1.2, 1.3];
/** Mon..Sun volume factors. */
const WEEKDAY_FACTOR = [0.9, 0.93, 0.96, 1.0, 1.15, 1.2, 0.86];
const dow = (t: number): number => (new Date(t).getUTCDay() + 6) % 7; // 0 = Monday
const isWeekend = (t: number): boolean => dow(t) >= 5;

interface Merchant {
  id: string;
  category: number;
  region: number;
  typical: number;
}

const merchants: Merchant[] = [];
for (let i = 0; i < N_MERCHANTS; i++) {
  const c = rng.weighted(CATEGORIES.map((x) => x.merchants));
  const typical = round2(rng.lognormal(CATEGORIES[c].median, 0.3));
  merchants.push({ id: `m${String(i + 1).padStart(4, '0')}`, category: c, region: rng.weighted(REGION_WEIGHTS), typical });
}
/** Merchants by category, and by (category, region). */
const byCategory: Merchant[][] = CATEGORIES.map((_, c) => merchants.filter((m) => m.category === c));
const byCategoryRegion: Merchant[][][] = CATEGORIES.map((_, c) => REGIONS.map((_, r) => merchants.filter((m) => m.category === c && m.region === r)));
for (const [c, list] of byCategory.entries()) if (list.length === 0) throw new Error(`no merchant in ${CATEGORIES[c].name}`);

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

// ---------------------------------------------------------------------------------------
// Customers and cards.

interface Customer {
  id: string;
  region: number;
  /** Account open time (ms, midnight UTC). */
  opened: number;
}

interface Card {
  id: string;
  customer: Customer;
  issued: number;
  /** Legit transactions a day, on average. */
  rate: number;
  /** Multiplier on amounts. */
  level: number;
  /** Category preference weights (weekday, weekend folded in later). */
  tastes: number[];
  /** Regular merchants by category. */
  regulars: Merchant[][];
  /** Every merchant the card has used (legit or not), for "new merchant" picks. */
  used: Set<string>;
}

const customers: Customer[] = [];
const cards: Card[] = [];
while (cards.length < N_CARDS) {
  const u = rng.next();
  let opened: number;
  if (u < 0.83) {
    // established: 180 days to ~20 years before the start
    const ageDays = 180 + Math.min(7000, Math.floor(rng.exponential(1500)));
    opened = START - ageDays * DAY;
  } else if (u < 0.93) {
    opened = START - rng.int(1, 179) * DAY;
  } else {
    opened = START + rng.int(0, DAYS - 5) * DAY;
  }
  const customer: Customer = { id: `u${String(customers.length + 1).padStart(4, '0')}`, region: rng.weighted(REGION_WEIGHTS), opened };
  customers.push(customer);
  const v = rng.next();
  const nCards = v < 0.8 ? 1 : v < 0.97 ? 2 : 3;
  for (let k = 0; k < nCards && cards.length < N_CARDS; k++) {
    const issued = opened + (k === 0 ? 0 : rng.int(0, 30) * DAY) + rng.int(8, 18) * HOUR;
    const tastes = CATEGORIES.map(() => rng.lognormal(1, 0.6));
    const regulars: Merchant[][] = CATEGORIES.map(() => []);
    const nRegular = rng.int(8, 30);
    const card: Card = {
      id: `c${String(cards.length + 1).padStart(4, '0')}`,
      customer,
      issued,
      rate: rng.lognormal(1.3, 0.55),
      level: rng.lognormal(1, 0.45),
      tastes,
      regulars,
      used: new Set(),
    };
    for (let j = 0; j < nRegular; j++) {
      const c = rng.weighted(CATEGORIES.map((x, i) => (x.weekday + x.weekend) * tastes[i]));
      regulars[c].push(localMerchant(c, customer.region));
    }
    cards.push(card);
  }
}

function localMerchant(c: number, region: number): Merchant {
  const local = byCategoryRegion[c][region];
  return local.length > 0 && rng.chance(0.85) ? rng.pick(local) : rng.pick(byCategory[c]);
}

// ---------------------------------------------------------------------------------------
// Transactions.

interface Txn {
  card: Card;
  merchant: Merchant;
  amount: number;
  time: number;
  fraud: 0 | 1;
  scenario: string;
}

const txns: Txn[] = [];

function add(card: Card, merchant: Merchant, amount: number, time: number, fraud: 0 | 1, scenario: string): void {
  if (time < START || time >= END || time < card.issued) return;
  const a = Math.max(0.5, round2(amount));
  txns.push({ card, merchant, amount: a, time: Math.floor(time), fraud, scenario });
  card.used.add(merchant.id);
}

/** A time within the day starting at `dayStart`, drawn from an hourly profile. */
function timeOfDay(dayStart: number, profile: readonly number[]): number {
  const h = rng.weighted(profile);
  return dayStart + h * HOUR + rng.next() * HOUR;
}

const ONLINE_RETAIL = cat('online_retail');
const ELECTRONICS = cat('electronics');
function ordinaryAmount(card: Card, m: Merchant): number {
  // apps, songs, e-books: tiny online purchases, as a card tester's are
  if (m.category === ONLINE_RETAIL && rng.chance(0.15)) return rng.int(0, 4) + 0.99;
  return m.typical * card.level ** 0.8 * Math.exp(CATEGORIES[m.category].sigma * 0.8 * rng.normal());
}

function ordinaryCategory(card: Card, t: number): number {
  const weekend = isWeekend(t);
  const h = new Date(t).getUTCHours();
  return rng.weighted(CATEGORIES.map((c, i) => (weekend ? c.weekend : c.weekday) * card.tastes[i] * c.hours(h)));
}

function ordinaryMerchant(card: Card, c: number): Merchant {
  const regular = card.regulars[c];
  if (regular.length > 0 && rng.chance(0.88)) return rng.pick(regular);
  const m = localMerchant(c, card.customer.region);
  if (rng.chance(0.3)) regular.push(m); // some new merchants become regulars
  return m;
}

/** A merchant this card has never used, of one of the categories. */
function newMerchant(card: Card, categories: readonly number[], local: boolean): Merchant {
  for (let tries = 0; tries < 50; tries++) {
    const c = rng.pick(categories);
    const m = local ? localMerchant(c, card.customer.region) : rng.pick(byCategory[c]);
    if (!card.used.has(m.id)) return m;
  }
  return rng.pick(byCategory[rng.pick(categories)]);
}

// 1. Ordinary legitimate spending, day by day.
for (const card of cards) {
  for (let d = 0; d < DAYS; d++) {
    const dayStart = START + d * DAY;
    if (dayStart + DAY <= card.issued) continue;
    const weekend = isWeekend(dayStart);
    const n = rng.poisson(card.rate * WEEKDAY_FACTOR[dow(dayStart)]);
    for (let k = 0; k < n; k++) {
      const t = timeOfDay(dayStart, weekend ? HOURLY_WEEKEND : HOURLY);
      const c = ordinaryCategory(card, t);
      const m = ordinaryMerchant(card, c);
      add(card, m, ordinaryAmount(card, m), t, 0, '');
    }
  }
}

// 2. Legitimate look-alikes.
const BURST_CATEGORIES = ['restaurant', 'coffee', 'entertainment', 'transit'].map(cat);
const TRIP_CATEGORIES = ['apparel', 'apparel', 'restaurant', 'coffee', 'grocery', 'entertainment', 'electronics'].map(cat);
const BIG_TICKET_CATEGORIES = ['travel', 'travel', 'electronics', 'electronics', 'jewelry', 'apparel', 'gift_cards'].map(cat);
const NEW_ACCOUNT_CATEGORIES = ['electronics', 'apparel', 'travel'].map(cat);

/** Mean amount of the card's transactions in the 30 days before t (null when none). */
function mean30(card: Card, t: number, list: readonly Txn[]): number | null {
  let sum = 0;
  let n = 0;
  for (const x of list) {
    if (x.time < t && x.time >= t - 30 * DAY) {
      sum += x.amount;
      n++;
    }
  }
  return n === 0 ? null : sum / n;
}

const byCard = new Map<Card, Txn[]>();
for (const x of txns) {
  const list = byCard.get(x.card);
  if (list) list.push(x);
  else byCard.set(x.card, [x]);
}
/** The card's usual amount: the mean of its transactions in the previous 30 days (ordinary spending only at this point). */
const usualAmount = (card: Card, t: number): number => mean30(card, t, byCard.get(card) ?? []) ?? 40 * card.level;

for (const card of cards) {
  for (let d = 0; d < DAYS; d++) {
    const dayStart = START + d * DAY;
    if (dayStart + DAY <= card.issued) continue;
    const weekend = isWeekend(dayStart);
    const hourly = weekend ? HOURLY_WEEKEND : HOURLY;
    if (rng.chance(0.0025 * (weekend ? 3 : 1))) {
      // a food market, fair or stadium: several small purchases within minutes
      let t = dayStart + rng.int(11, 21) * HOUR + rng.next() * HOUR;
      const k = rng.int(4, 9);
      const c0 = rng.pick(BURST_CATEGORIES);
      for (let j = 0; j < k; j++) {
        const c = rng.chance(0.6) ? c0 : rng.pick(BURST_CATEGORIES);
        const m = rng.chance(0.3) ? ordinaryMerchant(card, c) : newMerchant(card, [c], true);
        add(card, m, ordinaryAmount(card, m) * rng.uniform(0.4, 1), t, 0, 'legit_burst');
        t += rng.uniform(20_000, 120_000);
      }
    }
    if (rng.chance(0.002 * (weekend ? 1.5 : 1))) {
      // online bursts: in-game purchases, or a marketplace order charged in several parts
      let t = timeOfDay(dayStart, hourly);
      const k = rng.int(3, 8);
      const inGame = rng.chance(0.5);
      const c = inGame || rng.chance(0.6) ? ONLINE_RETAIL : ELECTRONICS;
      const shops = [newMerchant(card, [c], false), rng.pick(byCategory[c])];
      for (let j = 0; j < k; j++) {
        const m = rng.chance(0.8) ? shops[0] : shops[1];
        add(card, m, inGame ? rng.int(0, 9) + 0.99 : ordinaryAmount(card, m), t, 0, 'legit_online_burst');
        t += inGame ? rng.uniform(20_000, 150_000) : rng.uniform(2_000, 30_000);
      }
    }
    if (rng.chance(0.008 * (weekend ? 2 : 1))) {
      // a shopping trip: several merchants within an hour or so
      let t = timeOfDay(dayStart, hourly);
      const k = rng.int(3, 7);
      for (let j = 0; j < k; j++) {
        const c = rng.pick(TRIP_CATEGORIES);
        const m = rng.chance(0.5) ? newMerchant(card, [c], true) : ordinaryMerchant(card, c);
        add(card, m, ordinaryAmount(card, m), t, 0, 'legit_trip');
        t += rng.uniform(5, 20) * MIN;
      }
    }
    if (rng.chance(0.0035)) {
      // a big ticket: holiday booking, laptop, ring, coat
      const t = timeOfDay(dayStart, hourly);
      const c = rng.pick(BIG_TICKET_CATEGORIES);
      const m = rng.chance(0.5) ? ordinaryMerchant(card, c) : newMerchant(card, [c], true);
      add(card, m, usualAmount(card, t) * rng.uniform(5, 25), t, 0, 'legit_big_ticket');
    }
    if (dayStart - card.issued < 30 * DAY && rng.chance(0.02)) {
      // a new account's first big purchase
      const t = timeOfDay(dayStart, hourly);
      const m = newMerchant(card, NEW_ACCOUNT_CATEGORIES, true);
      add(card, m, rng.uniform(150, 1500), t, 0, 'legit_new_account');
    }
  }
}

// 3. Fraud: at most one episode per card.
const BURST_TEST = ['online_retail', 'gift_cards'].map(cat);
const BURST_CASHOUT = ['online_retail', 'gift_cards', 'electronics'].map(cat);
const SPREE = ['electronics', 'apparel', 'online_retail', 'jewelry', 'gift_cards'].map(cat);
const BIG_FRAUD = ['electronics', 'jewelry', 'travel', 'gift_cards'].map(cat);
const BUST_OUT = ['electronics', 'jewelry', 'gift_cards', 'travel'].map(cat);
const WEST = REGIONS.indexOf('west');

const HAZARD = 0.0025;
const episodes: Record<string, number> = {};

for (const card of cards) {
  const history = byCard.get(card) ?? [];
  for (let d = 0; d < DAYS; d++) {
    const dayStart = START + d * DAY;
    if (dayStart < card.issued) continue;
    const age = (dayStart - card.customer.opened) / DAY;
    const hazard = HAZARD * (age < 90 ? 3.5 : age < 365 ? 1.5 : 1) * (card.customer.region === WEST ? 1.4 : 1);
    if (!rng.chance(hazard)) continue;
    let t = timeOfDay(dayStart, HOURLY_FRAUD);
    let pattern: string;
    if (age < 90 && rng.chance(0.4)) pattern = 'bust_out';
    else pattern = ['burst', 'new_merchants', 'unusual_amount', 'quiet'][rng.weighted([0.35, 0.25, 0.3, 0.1])];
    episodes[pattern] = (episodes[pattern] ?? 0) + 1;
    switch (pattern) {
      case 'burst': {
        const k = rng.int(5, 16);
        const nTest = rng.int(1, 3);
        const slow = rng.chance(0.2);
        const tester = rng.pick(byCategory[rng.pick(BURST_TEST)]);
        for (let j = 0; j < k; j++) {
          if (j < nTest) add(card, tester, rng.uniform(0.5, 2.5), t, 1, 'burst');
          else {
            const m = rng.pick(byCategory[rng.pick(BURST_CASHOUT)]);
            add(card, m, Math.min(400, Math.max(30, rng.lognormal(110, 0.6))), t, 1, 'burst');
          }
          t += slow ? rng.uniform(3, 9) * MIN : rng.exponential(40_000) + 5_000;
        }
        break;
      }
      case 'new_merchants': {
        const k = rng.int(4, 9);
        for (let j = 0; j < k; j++) {
          const m = newMerchant(card, SPREE, false);
          add(card, m, m.typical * rng.lognormal(1.5, 0.4), t, 1, 'new_merchants');
          t += rng.uniform(4, 15) * MIN;
        }
        break;
      }
      case 'unusual_amount': {
        const mean = mean30(card, t, history) ?? 40 * card.level;
        const factor = rng.chance(0.2) ? rng.uniform(3, 5) : rng.uniform(5, 25);
        const k = rng.chance(1 / 3) ? 2 : 1;
        for (let j = 0; j < k; j++) {
          const m = newMerchant(card, BIG_FRAUD, false);
          add(card, m, mean * factor * rng.uniform(0.8, 1.2), t, 1, 'unusual_amount');
          t += rng.uniform(5, 55) * MIN;
        }
        break;
      }
      case 'bust_out': {
        const k = rng.int(3, 8);
        const span = rng.uniform(1, 6) * HOUR;
        for (let j = 0; j < k; j++) {
          const m = newMerchant(card, BUST_OUT, false);
          add(card, m, rng.uniform(200, 2000), t + (span * j) / k + rng.uniform(0, span / k / 2), 1, 'bust_out');
        }
        break;
      }
      case 'quiet': {
        const k = rng.chance(0.3) ? 2 : 1;
        for (let j = 0; j < k; j++) {
          const c = ordinaryCategory(card, t);
          const m = rng.chance(0.5) ? ordinaryMerchant(card, c) : newMerchant(card, [c], true);
          add(card, m, ordinaryAmount(card, m), t, 1, 'quiet');
          t += rng.uniform(1, 10) * HOUR;
        }
        break;
      }
    }
    break; // at most one episode per card
  }
}

// ---------------------------------------------------------------------------------------
// Order, ids, output.

txns.sort((a, b) => a.time - b.time);
// Strictly increasing event times (1 ms apart at least): no ties, within a card or across.
for (let i = 1; i < txns.length; i++) if (txns[i].time <= txns[i - 1].time) txns[i].time = txns[i - 1].time + 1;
const last = txns[txns.length - 1];
if (last.time >= END) throw new Error('a transaction moved past the end of the period');

const args = process.argv.slice(2);
const outIdx = args.indexOf('--out');
const HERE = dirname(fileURLToPath(import.meta.url));
const OUT = outIdx >= 0 ? resolve(args[outIdx + 1]) : join(HERE, 'data');
mkdirSync(OUT, { recursive: true });

const iso = (t: number) => new Date(t).toISOString();
const day = (t: number) => iso(t).slice(0, 10);
const pad = String(txns.length).length;
const sizes: Record<string, number> = {};
function write(name: string, lines: string[]): void {
  const text = lines.join('\n') + '\n';
  writeFileSync(join(OUT, name), text);
  sizes[name] = Buffer.byteLength(text);
}

const txLines = ['txn_id,card_id,customer_id,merchant_id,merchant_category,amount,event_time'];
const outLines = ['txn_id,is_fraud,scenario'];
txns.forEach((x, i) => {
  const id = `t${String(i + 1).padStart(pad, '0')}`;
  txLines.push(`${id},${x.card.id},${x.card.customer.id},${x.merchant.id},${CATEGORIES[x.merchant.category].name},${x.amount.toFixed(2)},${iso(x.time)}`);
  outLines.push(`${id},${x.fraud},${x.scenario}`);
});
write('transactions.csv', txLines);
write('outcomes.csv', outLines);

// Customers: a weekly CRM snapshot (Mondays 00:00 UTC) plus a row when an account opens in the period.
const custLines = ['customer_id,updated_at,account_age_days,home_region,account_open_date'];
const snapshots: { t: number; c: Customer }[] = [];
for (const c of customers) {
  if (c.opened >= START) snapshots.push({ t: c.opened, c });
  for (let w = START; w < END; w += 7 * DAY) if (w > c.opened) snapshots.push({ t: w, c });
}
snapshots.sort((a, b) => a.t - b.t || (a.c.id < b.c.id ? -1 : 1));
for (const { t, c } of snapshots) {
  custLines.push(`${c.id},${iso(t)},${Math.floor((t - c.opened) / DAY)},${REGIONS[c.region]},${day(c.opened)}`);
}
write('customers.csv', custLines);
write('cards.csv', ['card_id,customer_id,issued_at', ...cards.map((c) => `${c.id},${c.customer.id},${iso(c.issued)}`)]);
write('merchants.csv', ['merchant_id,merchant_category,region,typical_amount', ...merchants.map((m) => `${m.id},${CATEGORIES[m.category].name},${REGIONS[m.region]},${m.typical.toFixed(2)}`)]);

// ---------------------------------------------------------------------------------------
// Summary.

const nFraud = txns.filter((x) => x.fraud === 1).length;
const pct = (a: number, b: number) => `${((100 * a) / b).toFixed(2)}%`;
console.log(`${customers.length} customers, ${cards.length} cards, ${merchants.length} merchants`);
console.log(`${txns.length} transactions ${iso(txns[0].time)} .. ${iso(last.time)}; fraud ${nFraud} (${pct(nFraud, txns.length)})`);
const scen = new Map<string, { n: number; fraud: number }>();
for (const x of txns) {
  const k = x.scenario || 'ordinary';
  const s = scen.get(k) ?? { n: 0, fraud: 0 };
  s.n++;
  s.fraud += x.fraud;
  scen.set(k, s);
}
for (const [k, s] of [...scen].sort((a, b) => b[1].n - a[1].n)) {
  console.log(`  ${k.padEnd(18)} ${String(s.n).padStart(7)} txns (${pct(s.n, txns.length)} of all)${s.fraud ? `, ${episodes[k] ?? 0} episodes, ${pct(s.n, nFraud)} of fraud` : ''}`);
}
const ageOf = (x: Txn) => (x.time - x.card.customer.opened) / DAY;
for (const [label, lo, hi] of [
  ['account < 90 days', 0, 90],
  ['account 90-365 days', 90, 365],
  ['account > 1 year', 365, Infinity],
] as const) {
  const sel = txns.filter((x) => ageOf(x) >= lo && ageOf(x) < hi);
  console.log(`  ${label.padEnd(20)} ${String(sel.length).padStart(7)} txns, fraud rate ${pct(sel.filter((x) => x.fraud).length, sel.length)}`);
}
for (const [r, name] of REGIONS.entries()) {
  const sel = txns.filter((x) => x.card.customer.region === r);
  console.log(`  region ${name.padEnd(8)} ${String(sel.length).padStart(7)} txns, fraud rate ${pct(sel.filter((x) => x.fraud).length, sel.length)}`);
}
console.log(`wrote ${Object.entries(sizes).map(([k, v]) => `${k} ${(v / 1e6).toFixed(2)} MB`).join(', ')} to ${OUT}`);
