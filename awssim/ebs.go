package awssim

import "net/http"

func (s *Server) serveEBS(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }
