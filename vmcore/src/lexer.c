/*
 * lexer.c -- SOM tokens from a byte buffer.
 */
#include "lexer.h"

#include <stdbool.h>

void hyi_lexer_init(hyi_lexer *lx, const char *src, size_t len) {
    lx->src = lx->p = lx->line_start = src;
    lx->end = src + len;
    lx->line = 1;
    lx->error = NULL;
}

static bool is_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_digit(int c) { return c >= '0' && c <= '9'; }
static bool is_binary_char(int c) {
    switch (c) {
    case '~': case '&': case '|': case '*': case '/': case '\\': case '+': case '=':
    case '>': case '<': case ',': case '@': case '%': case '-':
        return true;
    default:
        return false;
    }
}

static int peek(const hyi_lexer *lx, size_t ahead) {
    return lx->p + ahead < lx->end ? (unsigned char)lx->p[ahead] : -1;
}

static void newline(hyi_lexer *lx) {
    lx->line++;
    lx->line_start = lx->p + 1;
}

/* Skip white space and "comments"; false (with lx->error) on an unterminated comment. */
static bool skip_space(hyi_lexer *lx) {
    while (lx->p < lx->end) {
        int c = (unsigned char)*lx->p;
        if (c == '\n') { newline(lx); lx->p++; }
        else if (c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v') lx->p++;
        else if (c == '"') {
            const char *start = lx->p++, *start_line = lx->line_start;
            int line = lx->line;
            while (lx->p < lx->end && *lx->p != '"') {
                if (*lx->p == '\n') newline(lx);
                lx->p++;
            }
            if (lx->p >= lx->end) {
                lx->p = start;
                lx->line = line;
                lx->line_start = start_line;
                lx->error = "unterminated comment";
                return false;
            }
            lx->p++;
        } else break;
    }
    return true;
}

static hyi_token make(hyi_lexer *lx, hyi_tok_kind kind, const char *start, int line, int column) {
    hyi_token t = { kind, start, (uint32_t)(lx->p - start), line, column };
    return t;
}

hyi_token hyi_lexer_next(hyi_lexer *lx, int after_pound) {
    lx->error = NULL;
    if (!skip_space(lx)) {
        hyi_token t = { HYI_TOK_ERROR, lx->p, 1, lx->line, (int)(lx->p - lx->line_start) + 1 };
        lx->p = lx->end;
        return t;
    }
    const char *start = lx->p;
    int line = lx->line, column = (int)(lx->p - lx->line_start) + 1;
    if (lx->p >= lx->end) return make(lx, HYI_TOK_EOF, start, line, column);
    int c = (unsigned char)*lx->p;

    if (is_alpha(c)) {
        while (lx->p < lx->end && (is_alpha((unsigned char)*lx->p) || is_digit((unsigned char)*lx->p))) lx->p++;
        if (peek(lx, 0) == ':' && peek(lx, 1) != '=') {
            lx->p++;
            if (!after_pound) return make(lx, HYI_TOK_KEYWORD, start, line, column);
            /* After #: a whole keyword selector like at:put: is one token. */
            hyi_tok_kind kind = HYI_TOK_KEYWORD;
            for (;;) {
                const char *save = lx->p;
                if (!(lx->p < lx->end && is_alpha((unsigned char)*lx->p))) break;
                while (lx->p < lx->end && (is_alpha((unsigned char)*lx->p) || is_digit((unsigned char)*lx->p))) lx->p++;
                if (peek(lx, 0) == ':') { lx->p++; kind = HYI_TOK_KEYWORDS; }
                else { lx->p = save; break; }
            }
            return make(lx, kind, start, line, column);
        }
        return make(lx, HYI_TOK_IDENT, start, line, column);
    }
    if (is_digit(c)) {
        while (lx->p < lx->end && is_digit((unsigned char)*lx->p)) lx->p++;
        if (peek(lx, 0) == '.' && is_digit(peek(lx, 1))) {
            lx->p++;
            while (lx->p < lx->end && is_digit((unsigned char)*lx->p)) lx->p++;
            if ((peek(lx, 0) == 'e' || peek(lx, 0) == 'E') &&
                (is_digit(peek(lx, 1)) || (peek(lx, 1) == '-' && is_digit(peek(lx, 2))))) {
                lx->p += 2;
                while (lx->p < lx->end && is_digit((unsigned char)*lx->p)) lx->p++;
            }
            return make(lx, HYI_TOK_DOUBLE, start, line, column);
        }
        return make(lx, HYI_TOK_INTEGER, start, line, column);
    }
    if (c == '\'') {
        lx->p++;
        while (lx->p < lx->end && *lx->p != '\'') {
            if (*lx->p == '\\' && lx->p + 1 < lx->end) lx->p++;
            if (*lx->p == '\n') newline(lx);
            lx->p++;
        }
        if (lx->p >= lx->end) {
            lx->error = "unterminated string";
            lx->p = lx->end;
            hyi_token t = { HYI_TOK_ERROR, start, 1, line, column };
            return t;
        }
        lx->p++;
        return make(lx, HYI_TOK_STRING, start, line, column);
    }
    if (c == '-' && peek(lx, 1) == '-' && peek(lx, 2) == '-' && peek(lx, 3) == '-') {
        while (lx->p < lx->end && *lx->p == '-') lx->p++;
        return make(lx, HYI_TOK_SEPARATOR, start, line, column);
    }
    if (c == ':') {
        lx->p++;
        if (peek(lx, 0) == '=') { lx->p++; return make(lx, HYI_TOK_ASSIGN, start, line, column); }
        return make(lx, HYI_TOK_COLON, start, line, column);
    }
    if (is_binary_char(c)) {
        while (lx->p < lx->end && is_binary_char((unsigned char)*lx->p)) {
            /* "x--1" would swallow a negative literal's sign; stop before a '-' that is
             * followed by a digit once we have an operator already. */
            if (lx->p > start && *lx->p == '-' && is_digit(peek(lx, 1))) break;
            lx->p++;
        }
        return make(lx, HYI_TOK_BINARY, start, line, column);
    }
    lx->p++;
    switch (c) {
    case '#': return make(lx, HYI_TOK_POUND, start, line, column);
    case '(': return make(lx, HYI_TOK_LPAREN, start, line, column);
    case ')': return make(lx, HYI_TOK_RPAREN, start, line, column);
    case '[': return make(lx, HYI_TOK_LBRACK, start, line, column);
    case ']': return make(lx, HYI_TOK_RBRACK, start, line, column);
    case '^': return make(lx, HYI_TOK_CARET, start, line, column);
    case '.': return make(lx, HYI_TOK_PERIOD, start, line, column);
    default:
        lx->error = "unexpected character";
        return make(lx, HYI_TOK_ERROR, start, line, column);
    }
}

const char *hyi_tok_name(hyi_tok_kind kind) {
    switch (kind) {
    case HYI_TOK_EOF: return "end of file";
    case HYI_TOK_ERROR: return "invalid token";
    case HYI_TOK_IDENT: return "identifier";
    case HYI_TOK_KEYWORD: return "keyword";
    case HYI_TOK_KEYWORDS: return "keyword selector";
    case HYI_TOK_BINARY: return "binary operator";
    case HYI_TOK_INTEGER: return "integer";
    case HYI_TOK_DOUBLE: return "double";
    case HYI_TOK_STRING: return "string";
    case HYI_TOK_POUND: return "'#'";
    case HYI_TOK_LPAREN: return "'('";
    case HYI_TOK_RPAREN: return "')'";
    case HYI_TOK_LBRACK: return "'['";
    case HYI_TOK_RBRACK: return "']'";
    case HYI_TOK_COLON: return "':'";
    case HYI_TOK_CARET: return "'^'";
    case HYI_TOK_PERIOD: return "'.'";
    case HYI_TOK_ASSIGN: return "':='";
    case HYI_TOK_SEPARATOR: return "'----'";
    }
    return "token";
}
