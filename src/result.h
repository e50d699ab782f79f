/* The two answers modules give, so a caller reads every one the same way
 * (docs/architecture.md, "One vocabulary").
 *
 * An operation that may need more input or more time (a parser fed bytes, a
 * relay step, a handshake with an upstream) returns enum result:
 *   RES_ERROR  it can never succeed; the module's out-parameter says why;
 *   RES_AGAIN  a valid prefix or a partial step: call again with more bytes,
 *              or when the socket is ready;
 *   RES_DONE   finished; the outputs are written.
 *
 * A decision that may lack a fact (rules, policy) returns enum verdict;
 * VERDICT_MAYBE means only the fact still missing (the destination address of
 * a name not resolved yet) can decide.
 *
 * Thin wrappers of system calls keep the calls' own convention: 0, or -1 with
 * errno set. Predicates return int 1/0. */
#ifndef SOCKS5D_RESULT_H
#define SOCKS5D_RESULT_H

enum result { RES_ERROR = -1, RES_AGAIN = 0, RES_DONE = 1 };

enum verdict { VERDICT_NO = 0, VERDICT_YES = 1, VERDICT_MAYBE = 2 };

#endif
