//! iMIP (RFC 6047): scheduling messages as email. Under construction.
