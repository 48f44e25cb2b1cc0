package awssim

import "net/http"

// route53State holds the simulated route53 resources. Guarded by Server.mu.
type route53State struct{}

func (st *route53State) init(s *Server) {}

func (s *Server) serveRoute53(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }
