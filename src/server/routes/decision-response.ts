/**
 * The decision route's 200 answer (`DecisionResponse`, src/pipeline/decide.ts) as a JSON schema,
 * for fastify's compiled serializer (fast-json-stringify) instead of JSON.stringify: the same
 * bytes (test/decision-response.test.ts checks every shape against JSON.stringify), in less CPU.
 *
 * The serializer writes only what the schema names, in the schema's order: properties are listed
 * in the order decide() and the policy create them, and the maps (outputs, features) and a
 * reason feature's value, whose content is open, are open here too, so nothing can be dropped.
 * Numbers are typed only where they are always finite: the serializer throws on NaN where
 * JSON.stringify writes null.
 */
import type { FastifySchema } from 'fastify';

const string = { type: 'string' } as const;
const nullableString = { type: ['string', 'null'] } as const;
const number = { type: 'number' } as const;

const reason = {
  type: 'object',
  // A policy reason (code, message), or a model reason (src/decision/reasons.ts, in that order).
  properties: {
    code: string,
    message: string,
    source: string,
    contribution: number,
    feature: string,
    features: {
      type: 'array',
      items: {
        type: 'object',
        properties: { feature: string, contribution: number, value: {} },
      },
    },
  },
} as const;

const timings = {
  type: 'object',
  properties: { validation: number, features: number, model: number, policy: number, explain: number, log: number, total: number },
} as const;

export const DECISION_RESPONSE_SCHEMA = {
  type: 'object',
  properties: {
    id: string,
    service: string,
    decision: nullableString,
    // A score is finite or null (the guards turn any other into a fallback).
    score: { type: ['number', 'null'] },
    reasons: { type: 'array', items: reason },
    model: { type: ['object', 'null'], properties: { name: string, version: string } },
    policy: { type: ['object', 'null'], properties: { version: string } },
    fallback: { type: 'object', properties: { used: { type: 'boolean' }, cause: nullableString } },
    timings_ms: timings,
    warnings: { type: 'array', items: { type: 'object', properties: { field: string, rule: string, message: string } } },
    features: { type: 'object', additionalProperties: string },
    // Named outputs: a class's name or a number, which may not be finite.
    outputs: { type: 'object', additionalProperties: {} },
    explanation: {
      type: 'object',
      properties: { model_decided: { type: 'boolean' }, method: string, class: string, stage: string, note: string },
    },
  },
} as const;

/** The route's schema: only the 200 answer's (typed loosely, so that fastify's types do not restrict the route's other status codes). */
export const DECISION_ROUTE_SCHEMA: FastifySchema = { response: { 200: DECISION_RESPONSE_SCHEMA } };
