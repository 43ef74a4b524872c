// The syntax tree of the expression language. Every node keeps its source span.

export type BinaryOperator = '==' | '!=' | '<' | '<=' | '>' | '>=' | '+' | '-' | '*' | '/' | '%';
export type LogicalOperator = '&&' | '||' | '??';
export type UnaryOperator = '!' | '-';

interface Span {
  start: number;
  end: number;
}

export interface LiteralNode extends Span {
  type: 'literal';
  value: null | boolean | number | string;
}
export interface IdentifierNode extends Span {
  type: 'identifier';
  name: string;
}
/** `object.property` */
export interface MemberNode extends Span {
  type: 'member';
  object: ExpressionNode;
  property: string;
  /** Span of the property name. */
  propertyStart: number;
}
/** `object[index]` */
export interface IndexNode extends Span {
  type: 'index';
  object: ExpressionNode;
  index: ExpressionNode;
}
export interface CallNode extends Span {
  type: 'call';
  callee: string;
  args: ExpressionNode[];
}
export interface UnaryNode extends Span {
  type: 'unary';
  operator: UnaryOperator;
  argument: ExpressionNode;
}
export interface BinaryNode extends Span {
  type: 'binary';
  operator: BinaryOperator;
  left: ExpressionNode;
  right: ExpressionNode;
  /** Offset of the operator. */
  operatorStart: number;
}
export interface LogicalNode extends Span {
  type: 'logical';
  operator: LogicalOperator;
  left: ExpressionNode;
  right: ExpressionNode;
}
export interface ConditionalNode extends Span {
  type: 'conditional';
  test: ExpressionNode;
  consequent: ExpressionNode;
  alternate: ExpressionNode;
}
export interface ArrayNode extends Span {
  type: 'array';
  elements: ExpressionNode[];
}
export interface ObjectNode extends Span {
  type: 'object';
  properties: { key: string; value: ExpressionNode }[];
}

export type ExpressionNode =
  | LiteralNode
  | IdentifierNode
  | MemberNode
  | IndexNode
  | CallNode
  | UnaryNode
  | BinaryNode
  | LogicalNode
  | ConditionalNode
  | ArrayNode
  | ObjectNode;
