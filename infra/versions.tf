# Versions are pinned so a plan made today means the same thing next month.
terraform {
  required_version = "~> 1.9.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "5.82.2"
    }
    github = {
      source  = "integrations/github"
      version = "6.6.0"
    }
    helm = {
      source  = "hashicorp/helm"
      version = "2.17.0"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = "2.35.1"
    }
    tls = {
      source  = "hashicorp/tls"
      version = "4.0.6"
    }
  }

  # State lives in S3; bucket, key and region are given at `terraform init`
  # (see infra/README.md), so no account detail is committed here.
  backend "s3" {}
}

provider "aws" {
  region = var.region
  # Refuse to touch any other account, whatever credentials are active.
  allowed_account_ids = [var.account_id]

  default_tags {
    tags = merge(var.tags, { "tess-hubs/cluster" = var.cluster_name })
  }
}

data "aws_eks_cluster_auth" "this" {
  name = aws_eks_cluster.this.name
}

# The cluster autoscaler and the default StorageClass are installed with the
# platform; no CLI is needed for the token (the same presigned STS token that
# aws-iam-authenticator makes).
provider "helm" {
  kubernetes {
    host                   = aws_eks_cluster.this.endpoint
    cluster_ca_certificate = base64decode(aws_eks_cluster.this.certificate_authority[0].data)
    token                  = data.aws_eks_cluster_auth.this.token
  }
}

provider "kubernetes" {
  host                   = aws_eks_cluster.this.endpoint
  cluster_ca_certificate = base64decode(aws_eks_cluster.this.certificate_authority[0].data)
  token                  = data.aws_eks_cluster_auth.this.token
}
