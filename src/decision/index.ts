/** The decision layer: safe rule expressions and versioned decision policies. */
export { compileExpr, parseExpr, ExprError, DEFAULT_MAX_DEPTH, DEFAULT_MAX_LENGTH } from './expr.ts';
export type { CompiledExpr, CompileOptions, NameType, Node, StaticType, Value } from './expr.ts';
export { createPolicy, loadPolicy, parsePolicy, policySchema, PolicyError, POLICY_FILE } from './policy.ts';
export type { Decision, GuardResult, ModelReason, ModelReasons, Policy, PolicyContext, PolicyInput, PolicyProblem, PolicySpec, Reason, ReasonCode, Stage } from './policy.ts';
export { textRowConverter, typedRow } from './row.ts';
